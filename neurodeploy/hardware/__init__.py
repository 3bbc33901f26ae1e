"""Hardware targets: does a spiking front-end fit a chip, and what would it cost there.

`layers` reads a front-end NIR graph into a chip-neutral list of spiking layers; `limits.json`
holds the published limits of each target with a citation per number; `fit` checks a front-end
against every target, layer by layer, and names what would make it fit; `speck` runs the
DYNAP-CNN / Speck 8-bit software model through sinabs; `sanafe_network` runs a netx front-end on
SANA-FE's calibrated Loihi model in a child process. docs/hardware_targets.md.
"""
