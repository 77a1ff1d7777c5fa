//! uno's learning worker: the UNO method's pipeline, stage by stage, from
//! logged feedback to a validated, published snapshot of experience.

pub mod prompts;
