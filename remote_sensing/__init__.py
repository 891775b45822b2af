"""hybridvision.remote_sensing: multispectral scene classification, scored by macro-F1.

Will hold rasterio GeoTIFF loading (EuroSAT layout), albumentations rotation/multiscale
augmentation and the hybrid classifier task. Nothing is implemented yet.
"""
