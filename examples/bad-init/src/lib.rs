//! A function that exports `handle` and an `init` of the wrong type (it
//! should be `func() -> result<_, string>`): its deploy is refused.

wit_bindgen::generate!({
    inline: "
        package test:bad-init;
        world bad-init {
            export handle: func(input: list<u8>) -> result<list<u8>, string>;
            export init: func() -> u32;
        }
    ",
});

struct BadInit;

impl Guest for BadInit {
    fn handle(input: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(input)
    }

    fn init() -> u32 {
        0
    }
}

export!(BadInit);
