//! Readers for each LoRA file format (filled in by the LoRA-loading work).
