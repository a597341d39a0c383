"""Text front end: tokenizer, cleaning, splitting and the prompt grid."""
