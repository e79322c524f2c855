"""Deep-learning data cleaning (CRESST seed paper 000; Cait seed paper 001, section 3.2).

architectures (the torch-free registry), preprocess (downsample to 512, min-max scale), models
(CNN, LSTM, TSCN, TST, Cait CNN), augment (pile-up, noise, time shift), data (chunked sources,
weak shuffling), train, predict, universal (the shipped model). Import the submodules: this
package imports nothing itself, so the workflow reads the registry without loading torch.
"""
