//! Write s3rf filters in Rust.
//!
//! A filter is a WebAssembly module that the s3rf agent asks, once per object,
//! whether to keep it, skip it or rename it. This crate hides the ABI
//! (`filters/ABI.md`): you implement [`Filter`] and call [`export_filter!`].
//!
//! ```ignore
//! use s3rf_filter::{Decision, Filter, Object};
//!
//! #[derive(serde::Deserialize)]
//! struct Params { suffix: String }
//!
//! struct SkipSuffix(Params);
//!
//! impl Filter for SkipSuffix {
//!     type Params = Params;
//!     fn new(params: Params) -> Result<Self, String> { Ok(Self(params)) }
//!     fn decide(&self, obj: &Object<'_>) -> Decision {
//!         if obj.key.ends_with(&self.0.suffix) {
//!             Decision::skip(format!("ends with {}", self.0.suffix))
//!         } else {
//!             Decision::Keep
//!         }
//!     }
//! }
//!
//! s3rf_filter::export_filter!(SkipSuffix);
//! ```
//!
//! Build with `cargo build --release --target wasm32-unknown-unknown` and a
//! `crate-type = ["cdylib"]` library; drop the `.wasm` (and an optional
//! `.toml` or `.json` of parameters with the same stem) into the agent's
//! filter directory.

pub mod abi;
pub mod glob;

#[doc(hidden)]
pub mod rt;

pub use abi::{Decision, Kind, Object};

/// The ABI version this SDK speaks; the agent refuses other versions.
pub const ABI_VERSION: u32 = 1;

/// A filter: built once per instance from its parameters, then asked once
/// per object.
///
/// Decisions must depend only on the object and the parameters: every agent
/// of a fleet must reach the same decision for the same object, and a retried
/// job must compute the same destination key. The agent may reuse an
/// instance for many objects or start a fresh one at any time, so keep no
/// state between calls.
pub trait Filter: Sized + 'static {
    /// Parameters, read from `<stem>.toml` or `<stem>.json` beside the
    /// module (TOML is converted to JSON by the agent). A filter without
    /// parameters can use [`NoParams`].
    type Params: serde::de::DeserializeOwned;

    /// Builds the filter. An error refuses the filter at load, with this text.
    fn new(params: Self::Params) -> Result<Self, String>;

    /// The decision for one object.
    fn decide(&self, obj: &Object<'_>) -> Decision;
}

/// Parameters of a filter that takes none (any parameter file is refused).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Exports the ABI functions for a [`Filter`] type.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        ::std::thread_local! {
            static S3RF_FILTER: ::std::cell::RefCell<::std::option::Option<$filter>> =
                const { ::std::cell::RefCell::new(::std::option::Option::None) };
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn s3rf_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn s3rf_alloc(len: u32) -> u32 {
            $crate::rt::alloc(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn s3rf_init(_ptr: u32, len: u32) -> u64 {
            S3RF_FILTER.with(|slot| $crate::rt::init::<$filter>(&mut slot.borrow_mut(), len))
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn s3rf_filter(_ptr: u32, len: u32) -> u64 {
            S3RF_FILTER.with(|slot| $crate::rt::filter::<$filter>(&mut slot.borrow_mut(), len))
        }
    };
}
