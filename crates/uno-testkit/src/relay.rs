//! A TCP relay a test can cut, hang and restore, to simulate a database (or
//! any peer) going away or stopping to answer (as a `SIGSTOP`ped server
//! does) mid-run without touching the real server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running relay from a local port to `target`.
#[derive(Debug)]
pub struct TcpRelay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    hung: watch::Sender<bool>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpRelay {
    /// Starts relaying 127.0.0.1:<random> → `target`.
    ///
    /// # Panics
    ///
    /// When no local port can be bound.
    pub async fn start(target: SocketAddr) -> TcpRelay {
        let listener = match TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(err) => panic!("TcpRelay: cannot bind: {err}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(err) => panic!("TcpRelay: no local address: {err}"),
        };
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (hung, _) = watch::channel(false);
        let connections = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            target,
            cut.clone(),
            generation.clone(),
            hung.clone(),
            connections.clone(),
        ));
        TcpRelay {
            addr,
            cut,
            generation,
            hung,
            connections,
            task,
        }
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every relayed connection and refuses new ones (accepted, then
    /// closed at once) until [`TcpRelay::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Stops passing bytes either way on every connection, open or new,
    /// without closing any: the peer looks alive but never answers, as a
    /// stopped (`SIGSTOP`) or wedged server does. [`TcpRelay::restore`]
    /// lets the held bytes through.
    pub fn hang(&self) {
        self.hung.send_replace(true);
    }

    /// Relays new connections again, and lets a hung relay's bytes flow.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.hung.send_replace(false);
    }

    /// Connections relayed since start.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    hung: watch::Sender<bool>,
    connections: Arc<AtomicUsize>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        connections.fetch_add(1, Ordering::SeqCst);
        let mut cut_signal = generation.subscribe();
        let hung_there = hung.subscribe();
        let hung_back = hung.subscribe();
        tokio::spawn(async move {
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (upstream_read, upstream_write) = upstream.into_split();
            tokio::select! {
                () = pump(client_read, upstream_write, hung_there) => {}
                () = pump(upstream_read, client_write, hung_back) => {}
                _ = cut_signal.changed() => {}
            }
        });
    }
}

/// Copies `from` to `to` until either ends, holding bytes while `hung`.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut hung: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if hung.wait_for(|h| !*h).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just as the relay hung are held too.
        if hung.wait_for(|h| !*h).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
