"""hybridvision shared core: what the three verticals build on, knowing nothing of any domain.

Layers, each importing only those before it (``tests/test_layering.py`` checks it):

1. ``layers`` (MONAI layer factories by ``spatial_dims``, token flattening, ``count_parameters``)
   and ``memory`` (resident memory, ``peak_memory`` of one call);
2. ``attention``: ``SpatialSelfAttention`` (global, windowed, axial; 1D/2D/3D);
3. ``blocks`` (``HybridBlock``, ``ConvPath``, ``TransformerBlock``, ``GatedFusion``,
   ``ResidualConvBlock``) and ``config`` (``BackboneConfig``, ``StageConfig``, ``PRESETS``,
   ``preset_config``, ``make_stages``);
4. models: ``HybridBackbone``, ``HybridClassifier``, the timm and smp adapters
   (``create_hybrid_classifier``, ``HybridSmpEncoder``), ResNet conversion
   (``hybridize_resnet``) and the training monitors (``attention_entropies``,
   ``grad_norm_ratios``);
5. ``shared.engine``: the Lightning training engine (``HybridTask``, ``ImageToImageTask``,
   ``TaskDataModule``, ``RunConfig``, ``fit``, ``InputError``, atomic writers, the monitor
   callback ``HybridMonitorCallback``) and the inference contract (``load_for_inference``);
6. ``shared.cli``: the ``TaskSpec`` chassis every ``hv-*`` command is built on
   (``build_cli``), with its example tasks ``shared.toy`` and ``shared.toy_image``;
7. ``shared.bench``: the benchmark toolkit (``python -m shared.bench``).

This package exports the names of layers 2-4 (below); the engine, the chassis and the bench are
imported from their own modules. Importing ``shared`` registers the presets with timm and smp
and loads no training framework (tested).
"""

from .attention import ATTENTION_KINDS, SpatialSelfAttention, attention_entropy
from .backbone import HybridBackbone
from .blocks import ConvPath, GatedFusion, HybridBlock, ResidualConvBlock, TransformerBlock
from .classifier import HybridClassifier
from .config import (
    BLOCK_KINDS,
    PRESETS,
    TOPOLOGIES,
    BackboneConfig,
    StageConfig,
    make_stages,
    preset_config,
)
from .convert import ResNetBody, hybridize_resnet
from .monitors import (
    EntropyReading,
    MonitorIssue,
    MonitorThresholds,
    attention_entropies,
    enable_attention_monitoring,
    grad_norm_ratios,
    monitor_issues,
    monitor_warnings,
)
from .smp_encoder import HybridSmpEncoder, register_smp_encoders
from .timm_models import create_hybrid_classifier

# One registration point: importing `shared` makes the presets visible to timm (decorators in
# timm_models) and smp.
register_smp_encoders()

__all__ = [
    "ATTENTION_KINDS",
    "BLOCK_KINDS",
    "ConvPath",
    "ResNetBody",
    "make_stages",
    "PRESETS",
    "TOPOLOGIES",
    "BackboneConfig",
    "GatedFusion",
    "HybridBackbone",
    "HybridBlock",
    "HybridClassifier",
    "EntropyReading",
    "MonitorIssue",
    "MonitorThresholds",
    "HybridSmpEncoder",
    "ResidualConvBlock",
    "SpatialSelfAttention",
    "StageConfig",
    "TransformerBlock",
    "attention_entropies",
    "attention_entropy",
    "enable_attention_monitoring",
    "grad_norm_ratios",
    "hybridize_resnet",
    "monitor_issues",
    "monitor_warnings",
    "create_hybrid_classifier",
    "register_smp_encoders",
    "preset_config",
]
