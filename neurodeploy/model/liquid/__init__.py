"""Mamba-Liquid-Spiking (iShield-corp/current-liquid-neural-network@7d69eac, branch mamba): FAMILIES.md §2."""
