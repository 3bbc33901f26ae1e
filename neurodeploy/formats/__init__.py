"""The file formats of this toolkit, one module each, below the exporters and the runtimes that share them.

    nir_frontend   the NIR front-end graph: layout, metadata keys, LIF/dt mapping, read/write, chain walk
    onnx_backbone  the ONNX backbone graphs: file names, input/output names, streaming-state layout
    liquid         the Mamba-Liquid-Spiking bundle: NIR encoder and ONNX block file names, graph names
"""
