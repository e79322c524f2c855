"""Signal models shared by the analysis and the simulator: the pulse model and templates
(`pulses`), and the noise power spectrum conventions (`spectra`). Imports nothing of cryopipe's
stages, the simulator or cleaning."""
