"""From one ABC tune to files, with every external tool run in a sandbox."""
