//! The glue behind [`crate::export_filter!`]: guest-owned buffers, `init` and
//! `filter`. Not for direct use.

use std::cell::RefCell;

use crate::Filter;
use crate::abi::{self, Decision};

thread_local! {
    /// The agent writes each input here (returned by `s3rf_alloc`).
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The encoded decision (or init error) lives here until the next call.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `s3rf_alloc`: a buffer of `len` bytes for the next `init` or `filter` call.
/// The same buffer is reused, so a long-running instance does not leak.
pub fn alloc(len: u32) -> u32 {
    INPUT.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        b.resize(len as usize, 0);
        b.as_mut_ptr() as usize as u32
    })
}

fn output(bytes: impl FnOnce(&mut Vec<u8>)) -> u64 {
    OUTPUT.with(|o| {
        let mut o = o.borrow_mut();
        o.clear();
        bytes(&mut o);
        let ptr = o.as_ptr() as usize as u64;
        (ptr << 32) | o.len() as u64
    })
}

fn build<F: Filter>(params: &[u8]) -> Result<F, String> {
    let params: &[u8] = if params.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        params
    };
    let params = serde_json::from_slice::<F::Params>(params)
        .map_err(|e| format!("invalid parameters: {e}"))?;
    F::new(params)
}

/// `s3rf_init`: parse the parameters (JSON; empty means none) and build the
/// filter. Returns 0, or the packed pointer and length of an error text.
pub fn init<F: Filter>(slot: &mut Option<F>, len: u32) -> u64 {
    let built = INPUT.with(|b| build::<F>(&b.borrow()[..len as usize]));
    match built {
        Ok(f) => {
            *slot = Some(f);
            0
        }
        Err(e) => output(|o| o.extend_from_slice(e.as_bytes())),
    }
}

/// `s3rf_filter`: decode the object, decide, encode the decision.
pub fn filter<F: Filter>(slot: &mut Option<F>, len: u32) -> u64 {
    if slot.is_none() {
        match build::<F>(b"") {
            Ok(f) => *slot = Some(f),
            Err(e) => return output(|o| Decision::Skip(e).encode(o)),
        }
    }
    let decision = INPUT.with(|b| {
        let b = b.borrow();
        match (
            abi::decode(&b[..(len as usize).min(b.len())]),
            slot.as_ref(),
        ) {
            (Ok(obj), Some(f)) => f.decide(&obj),
            (Err(e), _) => Decision::Skip(format!("filter could not read its input: {e}")),
            (_, None) => Decision::Keep,
        }
    });
    output(|o| decision.encode(o))
}
