//! What a deploy's bytes are, looked at before anything is compiled.
//!
//! A function is a WebAssembly component. Bytes that are something else (a
//! core module, Python or JavaScript source, other text, a native program)
//! are refused with a message that says what they look like and how to
//! build a component from them, without compiling anything or keeping
//! anything on disk. For a component, [`initial_memory`] is the linear
//! memory its core modules declare they start with, which a function's
//! memory limit must hold.

use wasmparser::{Encoding, Parser, Payload};

use crate::CompileError;

/// The first bytes of every WebAssembly binary.
const MAGIC: &[u8; 4] = b"\0asm";

/// How much of a text file is read to guess what it is.
const SNIFF: usize = 8 << 10;

/// Refuses bytes that are not a WebAssembly component, saying what they
/// look like and how to make a component of them. A component may still
/// fail to compile or to link; this only looks at its header.
pub fn check(bytes: &[u8]) -> Result<(), CompileError> {
    match kind(bytes) {
        Kind::Component => Ok(()),
        other => Err(CompileError::BadComponent(other.advice())),
    }
}

/// The linear memory, in bytes, that the component's core modules declare
/// at start (the sum over each module's defined memories of their initial
/// size), or `None` when the bytes do not parse. Memories a module imports
/// are counted where they are defined.
pub fn initial_memory(bytes: &[u8]) -> Option<u64> {
    let mut total: u64 = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::MemorySection(memories) = payload.ok()? {
            for memory in memories {
                let m = memory.ok()?;
                let page = 1u64 << m.page_size_log2.unwrap_or(16);
                total = total.saturating_add(m.initial.saturating_mul(page));
            }
        }
    }
    Some(total)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Component,
    CoreModule,
    /// A WebAssembly header of a version this runtime does not know.
    OtherWasm,
    Python,
    JavaScript,
    /// The WebAssembly text format.
    Wat,
    Text,
    Elf,
    Archive,
    Unknown,
}

fn kind(bytes: &[u8]) -> Kind {
    if bytes.starts_with(MAGIC) {
        return match Parser::new(0).parse(bytes, true) {
            Ok(wasmparser::Chunk::Parsed { payload: Payload::Version { encoding, .. }, .. }) => match encoding {
                Encoding::Component => Kind::Component,
                Encoding::Module => Kind::CoreModule,
            },
            _ => Kind::OtherWasm,
        };
    }
    if bytes.starts_with(b"\x7fELF") {
        return Kind::Elf;
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0x1f, 0x8b]) {
        return Kind::Archive;
    }
    let head = &bytes[..bytes.len().min(SNIFF)];
    // A cut in the middle of a character is still text.
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
        Err(_) => return Kind::Unknown,
    };
    if text.chars().any(|c| c.is_control() && !c.is_whitespace()) {
        return Kind::Unknown;
    }
    sniff_text(text)
}

/// Python, JavaScript, the WebAssembly text format, or other text, by the
/// shapes of their lines.
fn sniff_text(text: &str) -> Kind {
    let first = text.lines().next().unwrap_or_default();
    if first.starts_with("#!") {
        if first.contains("python") {
            return Kind::Python;
        }
        if first.contains("node") || first.contains("deno") || first.contains("bun") {
            return Kind::JavaScript;
        }
    }
    let (mut python, mut js) = (0u32, 0u32);
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with("(module") || l.starts_with("(component") {
            return Kind::Wat;
        }
        let py = ["def ", "async def ", "class ", "import ", "from ", "elif ", "@"];
        let javascript = ["function ", "export ", "const ", "let ", "var ", "async function ", "module.exports"];
        if py.iter().any(|p| l.starts_with(p)) && !l.contains(" from '") && !l.contains(" from \"") {
            python += 1;
            if l.ends_with(':') {
                python += 1;
            }
        }
        if javascript.iter().any(|p| l.starts_with(p)) || l.contains("=>") || l.contains("require(") {
            js += 1;
            if l.ends_with('{') || l.ends_with(';') {
                js += 1;
            }
        }
    }
    match (python, js) {
        (0, 0) => Kind::Text,
        (p, j) if p >= j => Kind::Python,
        _ => Kind::JavaScript,
    }
}

impl Kind {
    fn advice(self) -> String {
        match self {
            Kind::Component => "a component".into(),
            Kind::CoreModule => "this is a core WebAssembly module, not a component: build for the wasm32-wasip2 \
                 target (`cargo build --release --target wasm32-wasip2`, or `squall deploy NAME CRATE_DIR`), or \
                 wrap the module with `wasm-tools component new MODULE.wasm -o COMPONENT.wasm` (with \
                 `--adapt wasi_snapshot_preview1.reactor.wasm` if it uses WASI preview 1)"
                .into(),
            Kind::OtherWasm => "this has a WebAssembly header of a version or layer this runtime does not know \
                 (the magic is there, the version is not 1 for a module nor 0x1000d for a component): build it \
                 as a WASI 0.2 component"
                .into(),
            Kind::Python => "this looks like Python source, not a component: `squall deploy NAME app.py` builds \
                 it (with componentize-py: `pip install componentize-py==0.25.1`), or build the component \
                 yourself with `componentize-py -d wit -w handler componentize app -o app.wasm`"
                .into(),
            Kind::JavaScript => "this looks like JavaScript source, not a component: build it with \
                 componentize-js (`npm install @bytecodealliance/jco @bytecodealliance/componentize-js`, then \
                 `npx jco componentize app.js --wit wit -n handler -o app.wasm`) and deploy the .wasm"
                .into(),
            Kind::Wat => "this is the WebAssembly text format, not a binary component: compile it with \
                 `wasm-tools parse FILE.wat -o FILE.wasm` (a core module then needs `wasm-tools component new`)"
                .into(),
            Kind::Text => "this is text, not a WebAssembly component (a component starts with the bytes \
                 `\\0asm`): deploy the built .wasm file, a Rust crate's directory, or a Python file (app.py)"
                .into(),
            Kind::Elf => "this is a native executable or library (ELF), not a WebAssembly component: build for \
                 the wasm32-wasip2 target (`cargo build --release --target wasm32-wasip2`)"
                .into(),
            Kind::Archive => "this is an archive (zip or gzip), not a WebAssembly component: unpack it and \
                 deploy the component (.wasm) inside"
                .into(),
            Kind::Unknown => "this is not a WebAssembly component: it does not start with the magic bytes \
                 `\\0asm` (build a WASI 0.2 component, e.g. for the wasm32-wasip2 target)"
                .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_told_apart_by_what_they_look_like() {
        let cases: [(&[u8], Kind); 11] = [
            (b"\0asm\x0d\0\x01\0", Kind::Component),
            (b"\0asm\x01\0\0\0", Kind::CoreModule),
            (b"\0asm\x02\0\0\0", Kind::OtherWasm),
            (b"import squall_sdk\n\ndef handle(input):\n    return input\n", Kind::Python),
            (b"#!/usr/bin/env python3\nprint(1)\n", Kind::Python),
            (
                b"import { store } from 'squall';\nexport function handle(input) {\n  return input;\n}\n",
                Kind::JavaScript,
            ),
            (b"const f = (x) => x;\nmodule.exports = f;\n", Kind::JavaScript),
            (b";; a module\n(module\n  (func))\n", Kind::Wat),
            (b"hello, world\n", Kind::Text),
            (b"\x7fELF\x02\x01\x01", Kind::Elf),
            (&[0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3], Kind::Unknown),
        ];
        for (bytes, want) in cases {
            assert_eq!(kind(bytes), want, "{:?}", String::from_utf8_lossy(bytes));
        }
        assert!(check(b"\0asm\x0d\0\x01\0").is_ok());
        let Err(CompileError::BadComponent(why)) = check(b"def handle(x):\n    return x\n") else { panic!() };
        assert!(why.contains("Python") && why.contains("squall deploy NAME app.py"), "{why}");
    }

    #[test]
    fn initial_memory_sums_the_memories_modules_define() {
        // (module (memory 3) (memory 2)): 5 pages of 64 KiB.
        let module = [
            0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
            0x05, 0x05, 0x02, 0x00, 0x03, 0x00, 0x02, // memory section: two memories, min 3 and 2
        ];
        assert_eq!(initial_memory(&module), Some(5 << 16));
        assert_eq!(initial_memory(b"\0asm\x01\0\0\0"), Some(0));
        assert_eq!(initial_memory(b"\0asm\x01\0\0\0\x05\x09\x01"), None);
    }
}
