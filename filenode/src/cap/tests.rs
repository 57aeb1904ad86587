use super::*;
use proptest::prelude::*;

const CHK: &str =
    "URI:CHK:yzxcoagbetwet65ltjpbqyli3m:6b7inuiha2xdtgqzd55i6aeggutnxzr6qfwpv2ep5xlln6pgef7a:1:1:56";
const CHK_VERIFIER: &str =
    "URI:CHK-Verifier:i5nhq74zw2crkop634ra4hrvzm:6b7inuiha2xdtgqzd55i6aeggutnxzr6qfwpv2ep5xlln6pgef7a:1:1:56";

#[test]
fn chk_round_trip_and_verifier() {
    let cap = Cap::parse(CHK).unwrap();
    assert_eq!(cap.to_string(), CHK);
    assert_eq!(cap.kind(), "URI:CHK");
    assert!(cap.is_readonly());
    assert!(!cap.is_mutable());
    assert_eq!(cap.verifier().unwrap().to_string(), CHK_VERIFIER);
    assert_eq!(cap.readonly().unwrap(), cap);
    assert_eq!(Cap::parse(CHK_VERIFIER).unwrap().to_string(), CHK_VERIFIER);
    assert_eq!(
        cap.storage_index().unwrap().to_string(),
        "i5nhq74zw2crkop634ra4hrvzm"
    );
}

#[test]
fn debug_never_shows_secrets() {
    let cap = Cap::parse(CHK).unwrap();
    let debug = format!("{cap:?}");
    assert!(!debug.contains("yzxcoagbetwet65ltjpbqyli3m"), "{debug}");
    assert!(debug.contains("i5nhq74z"), "{debug}");
    let lit = Cap::parse("URI:LIT:nbswy3dpeb3w64tmmq").unwrap();
    assert!(!format!("{lit:?}").contains("nbswy"));
    let dir = Cap::parse(&CHK.replace("URI:CHK:", "URI:DIR2-CHK:")).unwrap();
    assert!(!format!("{dir:?}").contains("yzxcoagbetwet65ltjpbqyli3m"));
}

#[test]
fn mdmf_derivations_match_tahoe() {
    let write = "URI:MDMF:tn2ekpkmearz7k3bivm3ikuz3i:wcqgxw6ta2u3gajlvnw6czx4i6zmq3ydfcuy3qz5ns4ogvvpiyya";
    let cap = Cap::parse(write).unwrap();
    let ro = cap.readonly().unwrap();
    assert!(
        ro.to_string()
            .starts_with("URI:MDMF-RO:ttnh3ep5nzw4caqoalpk65peba:")
    );
    let verifier = cap.verifier().unwrap();
    assert!(
        verifier
            .to_string()
            .starts_with("URI:MDMF-Verifier:ehx7n7d4rpyqiayoha5ym4ae4u:")
    );
    assert_eq!(ro.verifier().unwrap(), verifier);
    assert!(verifier.readonly().is_none());
    // Extra fields after an MDMF cap's two base32 fields are accepted and dropped.
    assert_eq!(Cap::parse(&format!("{write}:3:131073")).unwrap(), cap);
}

#[test]
fn directory_caps_swap_the_prefix() {
    let write =
        "URI:DIR2-MDMF:tn2ekpkmearz7k3bivm3ikuz3i:wcqgxw6ta2u3gajlvnw6czx4i6zmq3ydfcuy3qz5ns4ogvvpiyya";
    let cap = Cap::parse(write).unwrap();
    assert_eq!(cap.kind(), "URI:DIR2-MDMF");
    assert_eq!(cap.to_string(), write);
    assert!(
        cap.readonly()
            .unwrap()
            .to_string()
            .starts_with("URI:DIR2-MDMF-RO:ttnh3ep5nzw4caqoalpk65peba:")
    );
    let chk_dir = CHK.replace("URI:CHK:", "URI:DIR2-CHK:");
    let cap = Cap::parse(&chk_dir).unwrap();
    assert_eq!(cap.to_string(), chk_dir);
    assert_eq!(
        cap.verifier().unwrap().to_string(),
        CHK_VERIFIER.replace("URI:CHK-", "URI:DIR2-CHK-")
    );
    let lit_dir = Cap::parse("URI:DIR2-LIT:").unwrap();
    assert_eq!(lit_dir.kind(), "URI:DIR2-LIT");
    assert!(lit_dir.verifier().is_none());
}

#[test]
fn prefixes_are_enforced() {
    let ro = Cap::parse(&format!("ro.{CHK}")).unwrap();
    assert_eq!(ro.to_string(), CHK);
    let imm = Cap::parse(&format!("imm.{CHK}")).unwrap();
    assert_eq!(imm.to_string(), CHK);
    let write = "URI:SSK:fs6ul2fju2fvb2cfx7gt6ngycm:hncpinwszbggrurbvuaaexnftk3j5wfr7473pj2g734mo2isxlbq";
    assert!(matches!(
        Cap::parse(&format!("ro.{write}")),
        Err(CapError::PrefixViolation { .. })
    ));
    let read_only = Cap::parse(write).unwrap().readonly().unwrap().to_string();
    assert!(Cap::parse(&format!("ro.{read_only}")).is_ok());
    assert!(matches!(
        Cap::parse(&format!("imm.{read_only}")),
        Err(CapError::PrefixViolation { .. })
    ));
    assert!(matches!(
        Cap::parse_lenient(&format!("ro.{write}")),
        Cap::Unknown(_)
    ));
}

#[test]
fn unknown_caps_are_kept_verbatim() {
    let text = "URI:NEW-KIND:whatever:comes:next";
    let cap = Cap::parse(text).unwrap();
    assert_eq!(cap, Cap::Unknown(text.to_owned()));
    assert_eq!(cap.to_string(), text);
    assert!(cap.storage_index().is_none());
}

#[test]
fn malformed_caps_name_the_field() {
    let cases = [
        (
            CHK.replace("yzxcoagbetwet65ltjpbqyli3m", "yzxcoagbetwet65ltjpbqyli3"),
            "key",
        ),
        (
            CHK.replace("yzxcoagbetwet65ltjpbqyli3m", "YZXCOAGBETWET65LTJPBQYLI3M"),
            "key",
        ),
        (
            CHK.replace("yzxcoagbetwet65ltjpbqyli3m", "yzxcoagbetwet65ltjpbqyli3z"),
            "key",
        ),
        (CHK.replace(":6b7i", ":6b71"), "UEB hash"),
        (CHK.replace(":1:1:56", ":2:1:56"), "needed shares (k)"),
        (CHK.replace(":1:1:56", ":1:300:56"), "total shares (N)"),
        (CHK.replace(":1:1:56", ":1:1:5x"), "size"),
        (CHK.replace(":1:1:56", ":0:1:56"), "needed shares (k)"),
    ];
    for (text, field) in cases {
        match Cap::parse(&text) {
            Err(CapError::BadField { field: got, .. }) => assert_eq!(got, field, "{text}"),
            other => panic!("{text}: expected a bad {field}, got {other:?}"),
        }
    }
    let message = Cap::parse(&CHK.replace(":1:1:56", ":1:1"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("URI:CHK") && message.contains("fields"),
        "{message}"
    );
    assert!(Cap::parse("URI:LIT:A").is_err());
}

proptest! {
    #[test]
    fn chk_caps_round_trip(key: [u8; 16], ueb in proptest::array::uniform32(any::<u8>()), k in 1u16..=256, extra in 0u16..=255, size: u64) {
        let total = (k + extra).min(256);
        let cap = FileCap::Chk(ChkCap { key, ueb_hash: ueb, needed: k, total, size });
        let text = cap.to_string();
        prop_assert_eq!(Cap::parse(&text).unwrap(), Cap::File(cap.clone()));
        let verifier = cap.verifier().unwrap().to_string();
        prop_assert_eq!(Cap::parse(&verifier).unwrap().to_string(), verifier);
    }

    #[test]
    fn lit_caps_round_trip(data in proptest::collection::vec(any::<u8>(), 0..56)) {
        let cap = Cap::File(FileCap::Lit(LitCap { data }));
        prop_assert_eq!(Cap::parse(&cap.to_string()).unwrap(), cap);
    }

    #[test]
    fn mutable_caps_round_trip(key: [u8; 16], fp in proptest::array::uniform32(any::<u8>()), mdmf: bool, dir: bool) {
        let format = if mdmf { MutableFormat::Mdmf } else { MutableFormat::Sdmf };
        let file = FileCap::Mutable(MutableCap { format, access: MutableAccess::Write { writekey: key }, fingerprint: fp });
        let cap = if dir { Cap::Dir(DirCap::new(file)) } else { Cap::File(file) };
        for c in [cap.clone(), cap.readonly().unwrap(), cap.verifier().unwrap()] {
            prop_assert_eq!(Cap::parse(&c.to_string()).unwrap(), c);
        }
    }

    #[test]
    fn parsing_garbage_never_panics(text in "URI:[A-Z0-9-]{0,12}:[a-z2-7:]{0,80}") {
        let _ = Cap::parse(&text);
    }
}

#[test]
fn encoder_and_reader_debug_hide_the_key() {
    use crate::immutable::{ChkEncoder, ChkParams};
    let key = [0xab; 16];
    let encoder = ChkEncoder::new(key, &ChkParams::default(), 1000).unwrap();
    let debug = format!("{encoder:?}");
    assert!(!debug.contains("171") && !debug.contains("ab, ab"), "{debug}");
    let segment = encoder.encode_segment(0, vec![0; 1000]);
    assert!(format!("{segment:?}").len() < 100);
}
