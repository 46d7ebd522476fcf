//! Import and export of COCO, YOLO, Pascal VOC and COCO results files.
