"""hybridvision.medical: MONAI 3D segmentation with the hybrid backbone, scored by Dice.

Will hold NIfTI/DICOM data loading for MSD and nnU-Net layouts, clinical preprocessing, a
U-shaped hybrid network, sliding-window inference and nnU-Net-style evaluation (issue 4).
Nothing is implemented yet.
"""
