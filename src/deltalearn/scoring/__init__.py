"""The one place that finds a response's tokens after its prompt (span) and scores them under a model
(logprobs, with the packed padding-free path in packing): training, evaluation and judges use it."""
