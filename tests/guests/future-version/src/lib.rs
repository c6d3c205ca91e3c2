//! TEST DOUBLE: exports `wasio:adapter/guest@2.0.0`; the host must refuse it at load.

wit_bindgen::generate!({ path: "wit", world: "future-adapter" });

struct Future;

impl exports::wasio::adapter::guest::Guest for Future {
    fn init(_options: String) -> Result<String, String> {
        Ok("future".into())
    }
}

export!(Future);
