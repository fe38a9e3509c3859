//! A loopback TCP proxy that cuts connections: the n-th connection is dropped after the server
//! sent it `cuts[n]` bytes. Connections beyond the list pass through untouched.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub struct CutProxy {
    pub addr: SocketAddr,
    cuts_made: Arc<Mutex<usize>>,
    accept_loop: JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(target: SocketAddr, cuts: Vec<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plan = Arc::new(Mutex::new(VecDeque::from(cuts)));
        let cuts_made = Arc::new(Mutex::new(0));
        let made = Arc::clone(&cuts_made);
        let accept_loop = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let cut_after = plan.lock().unwrap().pop_front();
                let made = Arc::clone(&made);
                connections.spawn(async move {
                    let Ok(upstream) = TcpStream::connect(target).await else {
                        return;
                    };
                    if forward(client, upstream, cut_after).await {
                        *made.lock().unwrap() += 1;
                    }
                });
            }
        });
        Self {
            addr,
            cuts_made,
            accept_loop,
        }
    }

    /// How many connections were cut mid-response.
    pub fn cuts_made(&self) -> usize {
        *self.cuts_made.lock().unwrap()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Forwards both ways; returns true when it cut the connection.
async fn forward(client: TcpStream, upstream: TcpStream, cut_after: Option<usize>) -> bool {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut upstream_write).await;
    });
    let mut sent = 0usize;
    let mut buffer = vec![0u8; 4096];
    let cut = loop {
        let Ok(read) = upstream_read.read(&mut buffer).await else {
            break false;
        };
        if read == 0 {
            break false;
        }
        let allowed = cut_after.map_or(read, |limit| read.min(limit - sent));
        if client_write.write_all(&buffer[..allowed]).await.is_err() {
            break false;
        }
        sent += allowed;
        if cut_after.is_some_and(|limit| sent >= limit) {
            break true;
        }
    };
    requests.abort();
    cut
}
