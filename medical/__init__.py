"""hybridvision.medical: MONAI 3D segmentation with the hybrid backbone, scored by Dice.

* ``data``: MSD / nnU-Net v2 dataset discovery and validation, DICOM series reading.
* ``prepare``: clinical preprocessing (fingerprint, RAS, resampling, normalisation, crop).
* ``transforms``: MONAI training/validation pipelines (balanced patches, augmentations).
* ``model``: ``HybridUNet`` (hybrid encoder, conv decoder, optional deep supervision).
* ``task``: the Lightning task (Dice+CE, sliding-window validation) for the shared engine.
* ``predict``: sliding-window inference written back in each scan's own geometry.
* ``metrics``: nnU-Net-style Dice and HD95, folder evaluation with overlays.
* ``phantom``: synthetic phantoms and the embedded MNI152 demo dataset.
* ``cli``: ``hv-med prepare | train | evaluate | predict | export``.
"""
