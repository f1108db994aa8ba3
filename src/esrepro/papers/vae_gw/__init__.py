"""VAE-GW (Hou, Wu, Qiu 2024): VAE of Kohn–Sham states and a network for GW corrections."""
