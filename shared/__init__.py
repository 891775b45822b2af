"""hybridvision shared core: N-D hybrid CNN-Transformer blocks and backbones."""

from .attention import SpatialSelfAttention, attention_entropy
from .backbone import HybridBackbone, ParallelStage
from .blocks import GatedFusion, HybridBlock, ResidualConvBlock, TransformerBlock
from .classifier import HybridClassifier
from .config import BLOCK_KINDS, PRESETS, TOPOLOGIES, BackboneConfig, StageConfig, preset_config
from .convert import hybridize_resnet
from .monitors import (
    HybridMonitorCallback,
    MonitorThresholds,
    attention_entropies,
    enable_attention_monitoring,
    grad_norm_ratios,
    monitor_warnings,
)
from .smp_encoder import HybridSmpEncoder, register_smp_encoders
from .timm_models import create_hybrid_classifier

# One registration point: importing `shared` makes the presets visible to timm (decorators in
# timm_models) and smp.
register_smp_encoders()

__all__ = [
    "BLOCK_KINDS",
    "PRESETS",
    "TOPOLOGIES",
    "BackboneConfig",
    "GatedFusion",
    "HybridBackbone",
    "HybridBlock",
    "HybridClassifier",
    "HybridMonitorCallback",
    "MonitorThresholds",
    "HybridSmpEncoder",
    "ParallelStage",
    "ResidualConvBlock",
    "SpatialSelfAttention",
    "StageConfig",
    "TransformerBlock",
    "attention_entropies",
    "attention_entropy",
    "enable_attention_monitoring",
    "grad_norm_ratios",
    "hybridize_resnet",
    "monitor_warnings",
    "create_hybrid_classifier",
    "register_smp_encoders",
    "preset_config",
]
