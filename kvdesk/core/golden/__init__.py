"""Golden sets: judged queries kept in the vault to measure key sets before switching.

``store`` holds the golden tables and their SQL, ``protocol`` runs key sets side by side on a
set, ``evaluation`` scores runs (nDCG@10, Recall@100, MRR@10) and reads BEIR folders.
"""
