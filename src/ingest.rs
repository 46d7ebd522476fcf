//! Adding image files to a project.
