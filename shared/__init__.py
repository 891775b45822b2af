"""hybridvision shared core: N-D hybrid CNN-Transformer blocks and backbones.

Importing it registers the presets with timm and smp and loads no training framework: the
Lightning engine lives in :mod:`shared.engine` (import it where training happens).
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
