//! Misbehaving and unusual peers, over real sockets: a station answering hundreds of
//! megabytes, an HTTP forward proxy, a station behind TLS that wants the node's client
//! certificate, and clients that send slowly or not at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Reads a request's head and its `Content-Length` body; returns (head, body).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head, buf[head_end..].to_vec()))
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// How a [`GiantStation`] frames its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` says how big it is.
    Declared,
    /// Chunked: nothing says it until it ends.
    Chunked,
}

/// A station that answers every request with `size` bytes: the start of a SOAP envelope, then
/// whitespace, sent as fast as the node reads it, until the node stops reading.
pub struct GiantStation {
    pub url: String,
    /// Bytes of body written, all connections together.
    pub sent: Arc<AtomicU64>,
    /// Answers it started.
    pub answers: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl GiantStation {
    pub async fn start(size: u64, framing: Framing) -> GiantStation {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent: Arc<AtomicU64> = Default::default();
        let answers: Arc<AtomicUsize> = Default::default();
        let (s, a) = (sent.clone(), answers.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    if read_request(&mut stream).await.is_err() {
                        return;
                    }
                    a.fetch_add(1, Ordering::Relaxed);
                    let _ = giant_answer(&mut stream, size, framing, &s).await;
                });
            }
        });
        GiantStation {
            url,
            sent,
            answers,
            task,
        }
    }
}

impl Drop for GiantStation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn giant_answer(
    stream: &mut TcpStream,
    size: u64,
    framing: Framing,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let framing_header = match framing {
        Framing::Declared => format!("Content-Length: {size}"),
        Framing::Chunked => "Transfer-Encoding: chunked".to_string(),
    };
    stream
        .write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n{framing_header}\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let start = b"<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>";
    let pad = vec![b' '; 64 * 1024];
    let mut written = 0u64;
    while written < size {
        let piece: &[u8] = if written == 0 { start } else { &pad };
        let piece = &piece[..piece.len().min((size - written) as usize)];
        match framing {
            Framing::Declared => stream.write_all(piece).await?,
            Framing::Chunked => {
                stream
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                stream.write_all(piece).await?;
                stream.write_all(b"\r\n").await?;
            }
        }
        written += piece.len() as u64;
        sent.fetch_add(piece.len() as u64, Ordering::Relaxed);
    }
    if framing == Framing::Chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// An HTTP forward proxy (absolute-form requests, as a client sends to a proxy for `http://`
/// URLs): forwards each request and counts them.
pub struct ForwardProxy {
    pub url: String,
    pub forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ForwardProxy {
    pub async fn start() -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let forwarded: Arc<AtomicUsize> = Default::default();
        let f = forwarded.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            while let Ok((mut stream, _)) = listener.accept().await {
                let (f, http) = (f.clone(), http.clone());
                tokio::spawn(async move {
                    while let Ok((head, body)) = read_request(&mut stream).await {
                        let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                        f.fetch_add(1, Ordering::Relaxed);
                        let answer = http
                            .post(&target)
                            .header("Content-Type", "text/xml; charset=utf-8")
                            .header(
                                "SOAPAction",
                                header(&head, "soapaction").unwrap_or_default(),
                            )
                            .body(body)
                            .send()
                            .await;
                        let (status, text) = match answer {
                            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                            Err(e) => (502, e.to_string()),
                        };
                        let reply = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}",
                            text.len()
                        );
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ForwardProxy {
            url,
            forwarded,
            task,
        }
    }
}

impl Drop for ForwardProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A station behind HTTPS that requires a client certificate from `client_ca`, forwarding every
/// request to `target` (the simulated EC's base URL, the path kept).
pub struct TlsStation {
    pub url: String,
    handle: actix_web::dev::ServerHandle,
}

impl TlsStation {
    pub fn start(
        server: &super::pki::Issued,
        client_ca: &std::path::Path,
        target: String,
    ) -> TlsStation {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        pagonode::install_crypto_provider();
        let roots = pagonode::front::certs::read_roots(client_ca).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .unwrap();
        let tls = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                pagonode::front::certs::read_certificates(&server.cert).unwrap(),
                pagonode::front::certs::read_private_key(&server.key).unwrap(),
            )
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let srv = HttpServer::new(move || {
            let (http, target) = (http.clone(), target.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (http, target) = (http.clone(), target.clone());
                async move {
                    let answer = http
                        .post(format!("{target}{}", req.path()))
                        .header("Content-Type", "text/xml; charset=utf-8")
                        .header(
                            "SOAPAction",
                            req.headers()
                                .get("SOAPAction")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default(),
                        )
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    HttpResponse::Ok()
                        .content_type("text/xml; charset=utf-8")
                        .body(answer.text().await.unwrap())
                }
            }))
        })
        .workers(1)
        .listen_rustls_0_23(listener, tls)
        .unwrap()
        .run();
        let handle = srv.handle();
        tokio::spawn(srv);
        TlsStation { url, handle }
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A connection from `local` (another loopback address, for an attacker of its own) to `port`.
pub async fn connect_from(local: &str, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap()
}

/// Waits until the node closes `stream` (reads until end of stream or an error); returns
/// whatever it answered before closing.
pub async fn closed_by_peer(stream: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the node kept the connection open for {within:?}"
    );
    String::from_utf8_lossy(&got).into_owned()
}
