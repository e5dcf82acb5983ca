"""Generic-response augmentation built on personakit.llm."""
