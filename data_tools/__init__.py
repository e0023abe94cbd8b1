"""Command-line tools that bring datasets into segnp's HDF5 format (docs/datasets.md).

Run each as ``python -m data_tools.NAME --help``:

- ``make_synthetic``: generate FlyingShapes (segmentation and flow, no download);
- ``voc_to_hdf5``: PASCAL VOC 2012 (optionally with the SBD augmentation);
- ``chairs_to_hdf5``: FlyingChairs;
- ``inspect``: print a summary of a file and render a PNG grid of samples.
"""
