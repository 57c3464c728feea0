import numpy as np
import pytest
import torch
from PIL import Image

from models_ml.engine.errors import WeightsFormatError
from models_ml.engine.features import (
    FeatureSpecError,
    HandcraftedFeatures,
    HFVisionFeatures,
    UNetEncoderFeatures,
    feature_extractor_from_config,
    feature_extractor_from_spec,
)


def _images(n: int = 3, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        for _ in range(n)
    ]


def _tiny_unet(in_channels: int = 3):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=12,
        attention_head_dim=4,
        norm_num_groups=4,
    )


def test_handcrafted_features_are_deterministic_and_separate_bright_from_dark():
    extractor = HandcraftedFeatures()
    bright = Image.new("L", (50, 50), 220)
    dark = Image.new("L", (50, 50), 30)
    first = extractor.extract([bright, dark])
    second = extractor.extract([bright, dark])
    assert first.shape[0] == 2 and first.dtype == np.float32
    assert np.array_equal(first, second)
    assert not np.allclose(first[0], first[1])


def test_handcrafted_config_rebuilds_an_equal_extractor():
    extractor = HandcraftedFeatures(size=32, bins=8, thumbnail=4)
    rebuilt = feature_extractor_from_config(extractor.config())
    images = _images(2)
    assert np.array_equal(extractor.extract(images), rebuilt.extract(images))


def test_unet_encoder_features_pool_down_and_mid_blocks_of_any_unet():
    unet = _tiny_unet()
    extractor = UNetEncoderFeatures(unet, timestep=10, resolution=16)
    features = extractor.extract(_images(3))
    # one pooled vector per down block (8 + 16) plus the mid block (16)
    assert features.shape == (3, 8 + 16 + 16)
    assert np.isfinite(features).all()
    assert not np.allclose(features[0], features[1])


def test_unet_encoder_features_accept_single_channel_unets():
    extractor = UNetEncoderFeatures(_tiny_unet(in_channels=1), resolution=16)
    assert extractor.extract(_images(2)).shape == (2, 40)


def test_unet_features_load_from_a_saved_diffusers_folder(tmp_path):
    unet = _tiny_unet()
    unet.save_pretrained(tmp_path / "unet", safe_serialization=True)
    extractor = feature_extractor_from_spec(f"unet:{tmp_path}")
    assert extractor.config()["path"] == str(tmp_path)
    assert extractor.extract(_images(1)).shape == (1, 40)


def test_hf_vision_features_use_a_local_vit_folder(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    ViTModel(config).save_pretrained(tmp_path, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    extractor = feature_extractor_from_spec(f"hf:{tmp_path}")
    features = extractor.extract(_images(3))
    assert features.shape == (3, 16)
    assert extractor.config() == {"kind": "hf", "path": str(tmp_path)}


def test_hf_vision_folder_without_safetensors_is_rejected(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor

    ViTConfig(hidden_size=16, num_attention_heads=2).save_pretrained(tmp_path)
    ViTImageProcessor().save_pretrained(tmp_path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(WeightsFormatError, match=str(tmp_path)):
        HFVisionFeatures(tmp_path)


@pytest.mark.parametrize("spec", ["resnet", "unet:", "hf", "handcrafted:x"])
def test_unknown_feature_spec_is_rejected_with_the_allowed_forms(spec):
    with pytest.raises(FeatureSpecError, match="handcrafted, unet:<model_dir>"):
        feature_extractor_from_spec(spec)


def test_in_memory_unet_config_cannot_be_rebuilt_without_the_model():
    config = UNetEncoderFeatures(_tiny_unet(), resolution=16).config()
    with pytest.raises(FeatureSpecError, match="pass the feature extractor"):
        feature_extractor_from_config(config)
