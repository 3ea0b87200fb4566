"""Video data: sources (folders, TFDS ArrayRecord, generated, bundled samples), clip reading
and transforms, and the Grain pipeline that feeds training and inference."""
