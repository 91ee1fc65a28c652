"""Pure measurements every stage shares: bootstrap intervals and paired gains (stats), text metrics
(text), verifiable instruction checks (ifcheck). No model, no stage imports."""
