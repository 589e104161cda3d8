//! initrd: being written
