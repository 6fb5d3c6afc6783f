//! A component that is not a Squall function: it exports `greet`, not `handle`.

wit_bindgen::generate!({
    inline: "
        package test:other;
        world other {
            export greet: func(name: string) -> string;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn greet(name: String) -> String {
        name
    }
}

export!(Other);
