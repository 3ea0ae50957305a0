"""What this machine and this data measure: step timing, throughput and hardware profiles, feature extraction's accuracy, the stored calibration records."""
