//! msgr-load against a server that is not msgr: a minimal MSNP12 server written here, with a
//! plain-HTTP Passport 1.4 nexus and `login2.srf`, that behaves as other servers do: it sends
//! no `CHL` (or one at an unexpected moment), never answers `QRY`, and sends lines msgr-load
//! has no use for (`SBS`, `MSG Hotmail`, `UBX`, `GTC`). Every MSNP scenario must complete.

use bytes::BytesMut;
use msgr_proto::frame::{Frame, FrameDecoder, Limits, Peer};
use msgr_proto::Dialect;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the stand-in does about challenges.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Challenges {
    /// Never sends `CHL` (both public revival servers measured in issue 17).
    None,
    /// Sends `CHL` in the middle of the reply to a user's first `CHG`, and never answers `QRY`.
    Late,
}

type Out = mpsc::UnboundedSender<Vec<u8>>;

#[derive(Default)]
struct State {
    /// Signed-in NS sessions by e-mail.
    ns: HashMap<String, Out>,
    /// Forward lists.
    forward: HashMap<String, HashSet<String>>,
    /// Switchboard rooms by cookie: the participants' e-mails and outputs.
    rooms: HashMap<String, Vec<(String, Out)>>,
}

struct StandIn {
    state: Mutex<State>,
    challenges: Challenges,
    sb_addr: Mutex<Option<SocketAddr>>,
    chl_sent: AtomicUsize,
    qry_received: AtomicUsize,
    cookies: AtomicU32,
}

impl StandIn {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn line(text: &str) -> Vec<u8> {
    format!("{text}\r\n").into_bytes()
}

fn with_payload(head: &str, payload: &str) -> Vec<u8> {
    format!("{head} {}\r\n{payload}", payload.len()).into_bytes()
}

/// Reads frames from `stream` and hands them to `handle`; what is sent to the returned
/// channel's other end is written to the stream.
async fn serve(
    stream: TcpStream,
    mut handle: impl FnMut(&Frame, &Out) -> bool + Send + 'static,
    on_close: impl FnOnce() + Send + 'static,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let mut decoder = FrameDecoder::new(Peer::Client, Limits::default());
    decoder.set_dialect(Dialect::Msnp12);
    let mut buf = BytesMut::with_capacity(1024);
    'conn: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(f)) => {
                    if !handle(&f, &tx) {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(_) => break 'conn,
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    on_close();
}

fn ns_command(s: &Arc<StandIn>, me: &mut Option<String>, f: &Frame, out: &Out) -> bool {
    let t: Vec<&str> = f.tokens().collect();
    let trid = t.get(1).copied().unwrap_or("0");
    let send = |bytes: Vec<u8>| {
        let _ = out.send(bytes);
    };
    match t.as_slice() {
        ["VER", ..] => send(line(&format!("VER {trid} MSNP12 CVR0"))),
        ["CVR", ..] => send(line(&format!(
            "CVR {trid} 7.0.0816 7.0.0816 7.0.0425 http://example.com/msn http://example.com"
        ))),
        ["USR", _, "TWN", "I", email] => {
            *me = Some(email.to_ascii_lowercase());
            send(line(&format!(
                "USR {trid} TWN S lc=1033,id=507,tw=40,fs=1,ct=1,kpp=1,kv=5"
            )));
        }
        ["USR", _, "TWN", "S", _ticket] => {
            let Some(email) = me.clone() else {
                return false;
            };
            send(line(&format!("USR {trid} OK {email} {email} 1 0")));
            // What a client gets after signing in and msgr-load has no use for.
            send(line("SBS 0 null"));
            send(with_payload(
                "MSG Hotmail Hotmail",
                "MIME-Version: 1.0\r\nContent-Type: text/x-msmsgsprofile; charset=UTF-8\r\nLoginTime: 1\r\n\r\n",
            ));
            send(line("GTC A"));
            send(with_payload(
                "UBX nobody@example.com",
                "<Data><PSM></PSM></Data>",
            ));
            s.state().ns.insert(email, out.clone());
        }
        ["SYN", ..] => send(line(&format!("SYN {trid} 0 0 0 0"))),
        ["ADC", _, "FL", n, ..] => {
            let (Some(owner), Some(contact)) = (me.clone(), n.strip_prefix("N=")) else {
                return false;
            };
            s.state()
                .forward
                .entry(owner)
                .or_default()
                .insert(contact.to_ascii_lowercase());
            send(line(&format!("ADC {trid} FL {n} F={contact}")));
        }
        ["CHG", _, status, caps, ..] => {
            let Some(email) = me.clone() else {
                return false;
            };
            if s.challenges == Challenges::Late && s.chl_sent.load(Ordering::Relaxed) < 1000 {
                s.chl_sent.fetch_add(1, Ordering::Relaxed);
                send(line("CHL 0 29409134351025259292"));
            }
            send(line(&format!("CHG {trid} {status} {caps}")));
            let st = s.state();
            for (owner, contacts) in &st.forward {
                if contacts.contains(&email) {
                    if let Some(w) = st.ns.get(owner) {
                        let _ = w.send(line(&format!("NLN {status} {email} {email} {caps}")));
                    }
                }
            }
        }
        ["QRY", ..] => {
            // Counted, never answered.
            s.qry_received.fetch_add(1, Ordering::Relaxed);
        }
        ["PNG"] => send(line("QNG 50")),
        ["XFR", _, "SB"] => {
            let Some(sb) = *s.sb_addr.lock().unwrap_or_else(|p| p.into_inner()) else {
                return false;
            };
            let cookie = format!("{}.42", s.cookies.fetch_add(1, Ordering::Relaxed));
            send(line(&format!("XFR {trid} SB {sb} CKI {cookie}")));
        }
        ["OUT"] => return false,
        _ => send(line(&format!("200 {trid}"))),
    }
    true
}

fn sb_command(s: &Arc<StandIn>, me: &mut Option<(String, String)>, f: &Frame, out: &Out) -> bool {
    let t: Vec<&str> = f.tokens().collect();
    let trid = t.get(1).copied().unwrap_or("0");
    let send = |bytes: Vec<u8>| {
        let _ = out.send(bytes);
    };
    match t.as_slice() {
        ["USR", _, email, cookie] => {
            *me = Some((email.to_string(), cookie.to_string()));
            s.state()
                .rooms
                .insert(cookie.to_string(), vec![(email.to_string(), out.clone())]);
            send(line(&format!("USR {trid} OK {email} {email}")));
        }
        ["CAL", _, callee] => {
            let Some((caller, cookie)) = me.clone() else {
                return false;
            };
            let Some(sb) = *s.sb_addr.lock().unwrap_or_else(|p| p.into_inner()) else {
                return false;
            };
            send(line(&format!("CAL {trid} RINGING 11752013")));
            if let Some(ns) = s.state().ns.get(*callee) {
                let _ = ns.send(line(&format!(
                    "RNG 11752013 {sb} CKI {cookie} {caller} {caller}"
                )));
            }
        }
        ["ANS", _, email, cookie, _session] => {
            *me = Some((email.to_string(), cookie.to_string()));
            let mut st = s.state();
            let Some(room) = st.rooms.get_mut(*cookie) else {
                return false;
            };
            for (i, (other, _)) in room.iter().enumerate() {
                send(line(&format!(
                    "IRO {trid} {} {} {other} {other}",
                    i + 1,
                    room.len()
                )));
            }
            send(line(&format!("ANS {trid} OK")));
            for (_, o) in room.iter() {
                let _ = o.send(line(&format!("JOI {email} {email}")));
            }
            room.push((email.to_string(), out.clone()));
        }
        ["MSG", _, mode, _len] => {
            let Some((from, cookie)) = me.clone() else {
                return false;
            };
            let payload =
                String::from_utf8_lossy(f.payload().map_or(&[][..], |p| &p[..])).into_owned();
            if let Some(room) = s.state().rooms.get(&cookie) {
                for (who, o) in room {
                    if *who != from {
                        let _ = o.send(with_payload(&format!("MSG {from} {from}"), &payload));
                    }
                }
            }
            if *mode == "A" {
                send(line(&format!("ACK {trid}")));
            }
        }
        ["OUT"] => return false,
        _ => {}
    }
    true
}

/// Starts the stand-in; returns the arguments that point msgr-load at it.
async fn start(challenges: Challenges) -> (Arc<StandIn>, Vec<String>) {
    let s = Arc::new(StandIn {
        state: Mutex::default(),
        challenges,
        sb_addr: Mutex::new(None),
        chl_sent: AtomicUsize::new(0),
        qry_received: AtomicUsize::new(0),
        cookies: AtomicU32::new(1),
    });
    let ns = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let sb = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let (ns_addr, http_addr) = (
        ns.local_addr().expect("ns"),
        http.local_addr().expect("http"),
    );
    *s.sb_addr.lock().expect("lock") = Some(sb.local_addr().expect("sb"));

    let st = s.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = ns.accept().await {
            let st = st.clone();
            let closing = st.clone();
            let me = Arc::new(Mutex::new(None::<String>));
            let gone = me.clone();
            tokio::spawn(serve(
                stream,
                move |f, out| ns_command(&st, &mut me.lock().expect("lock"), f, out),
                move || {
                    if let Some(email) = gone.lock().expect("lock").take() {
                        closing.state().ns.remove(&email);
                    }
                },
            ));
        }
    });
    let st = s.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = sb.accept().await {
            let st = st.clone();
            let closing = st.clone();
            let me = Arc::new(Mutex::new(None::<(String, String)>));
            let gone = me.clone();
            tokio::spawn(serve(
                stream,
                move |f, out| sb_command(&st, &mut me.lock().expect("lock"), f, out),
                move || {
                    // The others hear that this participant left.
                    let Some((email, cookie)) = gone.lock().expect("lock").take() else {
                        return;
                    };
                    let mut state = closing.state();
                    if let Some(room) = state.rooms.get_mut(&cookie) {
                        room.retain(|(who, _)| *who != email);
                        for (_, o) in room.iter() {
                            let _ = o.send(line(&format!("BYE {email}")));
                        }
                    }
                },
            ));
        }
    });
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = http.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let extra = if head.starts_with("GET /rdr/pprdr.asp") {
                    format!("PassportURLs: DARealm=Passport.Net,DALogin=http://{http_addr}/login2.srf,DAReg=x\r\n")
                } else {
                    "Authentication-Info: Passport1.4 da-status=success,from-PP='t=standin&p=1',ru=http://messenger.msn.com\r\n".to_owned()
                };
                let _ = stream
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: 0\r\n\r\n").as_bytes(),
                    )
                    .await;
            });
        }
    });
    let target = vec![
        "--msnp".to_owned(),
        ns_addr.to_string(),
        "--nexus".to_owned(),
        format!("http://{http_addr}/rdr/pprdr.asp"),
        "--password".to_owned(),
        "pw".to_owned(),
        "--json".to_owned(),
    ];
    (s, target)
}

/// Runs msgr-load with `args` and the stand-in's `target`; its JSON report.
async fn run(args: &[&str], target: &[String]) -> String {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(target.iter().cloned());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_msgr-load"))
        .args(&all)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "msgr-load {all:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A number in msgr-load's JSON report.
fn figure(json: &str, name: &str) -> f64 {
    let key = format!("\"{name}\":");
    let Some(at) = json.find(&key) else {
        panic!("no {name} in {json}")
    };
    let rest = &json[at + key.len()..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} in {json}"))
}

async fn every_scenario_completes(challenges: Challenges) {
    let (s, target) = start(challenges).await;

    let json = run(
        &[
            "login",
            "--accounts",
            "3",
            "--count",
            "6",
            "--concurrency",
            "2",
            "--probe",
            "2",
        ],
        &target,
    )
    .await;
    assert_eq!(figure(&json, "logins"), 6.0, "{json}");

    let json = run(&["idle", "--count", "4", "--hold", "1"], &target).await;
    assert_eq!(figure(&json, "online"), 4.0, "{json}");
    assert_eq!(figure(&json, "login_failures"), 0.0, "{json}");
    assert_eq!(figure(&json, "dropped_while_holding"), 0.0, "{json}");

    let json = run(
        &[
            "presence",
            "--count",
            "4",
            "--contacts",
            "2",
            "--rate",
            "4",
            "--duration",
            "2",
            "--settle",
            "1",
        ],
        &target,
    )
    .await;
    let expected = figure(&json, "notifications_expected");
    assert!(expected > 0.0, "{json}");
    assert_eq!(figure(&json, "notifications_received"), expected, "{json}");
    assert_eq!(figure(&json, "users_dropped"), 0.0, "{json}");

    // Acknowledged and text-mode relay; switchboards set up one at a time.
    for ack in ["a", "n"] {
        let json = run(
            &[
                "relay",
                "--pairs",
                "2",
                "--duration",
                "1",
                "--ack",
                ack,
                "--sb-concurrency",
                "1",
            ],
            &target,
        )
        .await;
        assert!(figure(&json, "round_trips") > 0.0, "{json}");
        assert_eq!(figure(&json, "naks"), 0.0, "{json}");
        if ack == "a" {
            assert!(figure(&json, "acks") > 0.0, "{json}");
        }
    }

    // Every challenge was answered, though it came late and no QRY was ever acknowledged.
    let (sent, answered) = (
        s.chl_sent.load(Ordering::Relaxed),
        s.qry_received.load(Ordering::Relaxed),
    );
    match challenges {
        Challenges::None => assert_eq!((sent, answered), (0, 0)),
        Challenges::Late => {
            assert!(sent > 0);
            assert_eq!(answered, sent);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_complete_against_a_server_without_challenges() {
    every_scenario_completes(Challenges::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_answer_a_challenge_that_comes_late_and_is_never_acknowledged() {
    every_scenario_completes(Challenges::Late).await;
}
