#[test]
fn probe() { println!("{:?}", option_env!("CARGO_BIN_EXE_msgr")); }
