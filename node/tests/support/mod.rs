//! A one-thread HTTP/1.1 server on loopback for the tests: it answers each request with what
//! the test's function returns for the request line and body, and records the bodies.
#![cfg(test)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    sync::{Arc, Mutex},
};

/// The function that answers: (request line, body) -> (status, body).
pub type Answer = Arc<dyn Fn(&str, &str) -> (u16, String) + Send + Sync>;

/// A running server: its base URL and the bodies it was sent.
pub struct Server {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<String>>>,
}

pub fn serve(answer: Answer) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let (status, text) = answer(line.trim(), &body);
            seen.lock().unwrap().push(body);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    Server { url, bodies }
}

impl Server {
    /// The bodies that were reports, in the order they came.
    #[allow(dead_code, reason = "not every test file reads the reports")]
    pub fn reports(&self) -> Vec<quid_report::report::Report> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }
}
