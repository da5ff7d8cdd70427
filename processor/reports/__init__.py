"""The shell around the analysis: report files, window selection, installation state, lock and the run loop."""
