"""File formats: Middlebury ``.flo`` flow, the flow colour coding, PNG images and
palette label PNGs.  Every writer is atomic (temporary file, then rename)."""
from ..atomic import atomic_path
from .flo import FLO_MAGIC, read_flo, write_flo
from .flow_color import color_wheel, flow_to_color, wheel_legend
from .png import (label_palette, image_size, read_image, read_label, write_png, write_label_png,
                  overlay_labels)

__all__ = ["atomic_path", "FLO_MAGIC", "read_flo", "write_flo", "color_wheel",
           "flow_to_color", "wheel_legend", "label_palette", "image_size", "read_image",
           "read_label", "write_png", "write_label_png", "overlay_labels"]
