"""hybridvision.medical: MONAI 3D (and 2D) segmentation with the hybrid backbone, scored by Dice.

Command: ``hv-med prepare | train | evaluate | predict | bench | export`` (``medical.cli:main``).

Library (public entry points):

* ``data``: MSD / nnU-Net v2 dataset discovery and validation (``discover_dataset``,
  ``check_dataset``, ``read_labels``), DICOM series reading, NIfTI writing.
* ``prepare``: clinical preprocessing into cached ``.npy`` cases (``prepare_dataset``,
  ``load_prepared``, ``build_pipeline``: RAS, resampling, crop, normalisation), built from
  ``fingerprint`` (``compute_fingerprint``), ``normalization`` (``normalization_plan``,
  ``ModalityNormalized``), ``cache`` (the prepared folder: signatures, manifest, lock) and
  ``pool`` (``run_jobs`` on worker processes).
* ``transforms``: MONAI training/validation pipelines (``train_transforms``, ``val_transforms``).
* ``model``: ``HybridUNet`` (hybrid encoder, conv decoder, optional deep supervision),
  ``build_medical_model``, the MONAI baselines.
* ``task``: the Lightning task (Dice+CE, sliding-window validation) for the shared engine
  (``SegmentationTask``, ``build_task``).
* ``metrics``: nnU-Net-convention Dice and HD95 of two label maps (``dice_per_class``,
  ``hd95_per_class``).
* ``phantom``: synthetic phantoms and the embedded MNI152 demo dataset.

Commands: ``cli``; ``predict`` (sliding-window segmentation written back in each scan's own
geometry: ``predict_main``, ``segment``); ``evaluate`` (folder scoring with summary, CSV and
overlays: ``evaluate_folders``); ``bench``; ``demo`` (``python -m medical.demo``).
"""
