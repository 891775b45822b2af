"""hybridvision.video_sr: spatiotemporal 3D video super-resolution, scored by PSNR.

Will hold BasicSR-layout frame folders and video-file I/O, BI/BD degradations, a 3D hybrid
super-resolution network and tiled inference. Nothing is implemented yet.
"""
