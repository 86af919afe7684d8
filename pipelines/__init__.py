"""One module per job (prepare, pretrain, score, generate, vep, embed, classify, align): typed functions that the CLI, the API and the workflows all call."""
