"""Key spaces: lexical (tantivy BM25), dense (ONNX vectors) and the vector store they share."""
