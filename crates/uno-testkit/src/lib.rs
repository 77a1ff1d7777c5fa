//! Test support for uno.
//!
//! uno is a proxy, so almost every interesting test needs something on the
//! other side of it. This crate provides that something: [`MockUpstream`], a
//! real HTTP server speaking the OpenAI wire format whose answers a test can
//! script (text, streams, errors, delays, resets, dropped connections) and
//! whose traffic it can inspect afterwards. The same server is cheap enough to
//! stand in for a real model server in load tests.
//!
//! [`TestDatabase`] gives each test a fresh real database (a new Postgres
//! database, or a SQLite file in a temporary directory) and removes it
//! afterwards; [`TcpRelay`] sits between uno and a database so a test can cut
//! and restore the connection. [`seed::seed_demo`] fills a store with a
//! realistic two-tenant dataset (traffic, feedback, snapshots).

pub mod community;
pub mod db;
pub mod http;
pub mod learn;
pub mod mock;
pub mod payload;
pub mod pg_cpu;
pub mod records;
pub mod relay;
pub mod seed;
pub mod stored;

pub use db::{Backend, TestDatabase};
pub use mock::{
    BETTER_ANSWER, MockBuilder, MockReply, MockUpstream, PLAIN_ANSWER, RecordedRequest,
    message_texts, validation_model,
};
pub use relay::TcpRelay;
