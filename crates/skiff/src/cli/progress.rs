//! Showing a pull's progress: on a terminal, a line per layer redrawn in place (bytes and
//! rate); otherwise a line per layer when it is done, so logs stay readable.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use skiff_image::{Progress, PullEvent};

use super::image::{human_size, short};

struct Layer {
    digest: String,
    done: u64,
    size: u64,
    started: Instant,
    finished: bool,
}

struct State {
    layers: Vec<Layer>,
    /// Lines drawn last time (to move back over them).
    drawn: usize,
}

pub struct PullDisplay {
    tty: bool,
    state: Arc<Mutex<State>>,
}

impl PullDisplay {
    pub fn new(tty: bool) -> PullDisplay {
        PullDisplay {
            tty,
            state: Arc::new(Mutex::new(State {
                layers: Vec::new(),
                drawn: 0,
            })),
        }
    }

    pub fn progress(&self) -> Progress {
        let state = self.state.clone();
        let tty = self.tty;
        Arc::new(move |event| {
            let mut state = skiff_client::lock(&state);
            update(&mut state, event, tty);
            if tty {
                redraw(&mut state);
            }
        })
    }

    pub fn finish(&self) {
        if self.tty {
            redraw(&mut skiff_client::lock(&self.state));
        }
    }
}

fn layer<'a>(state: &'a mut State, digest: &str, size: u64) -> &'a mut Layer {
    if let Some(i) = state.layers.iter().position(|l| l.digest == digest) {
        return &mut state.layers[i];
    }
    state.layers.push(Layer {
        digest: digest.to_string(),
        done: 0,
        size,
        started: Instant::now(),
        finished: false,
    });
    state.layers.last_mut().expect("just pushed")
}

fn update(state: &mut State, event: PullEvent, tty: bool) {
    match event {
        PullEvent::Resolved {
            digest,
            layers,
            bytes,
        } => {
            if !tty {
                eprintln!("{}: {layers} layers, {}", short(&digest), human_size(bytes));
            }
        }
        PullEvent::LayerPresent { digest, size } => {
            let l = layer(state, &digest, size);
            l.done = size;
            l.finished = true;
            if !tty {
                eprintln!("  {} already present", short(&digest));
            }
        }
        PullEvent::LayerProgress { digest, done, size } => {
            let l = layer(state, &digest, size);
            l.done = done;
            if done >= size && !l.finished {
                l.finished = true;
                if !tty {
                    eprintln!("  {} {}", short(&digest), rate_line(l));
                }
            }
        }
        PullEvent::LayerUnpacked { .. } => {}
    }
}

fn rate_line(l: &Layer) -> String {
    let secs = l.started.elapsed().as_secs_f64().max(0.001);
    let rate = (l.done as f64 / secs) as u64;
    format!(
        "{} / {} ({}/s)",
        human_size(l.done),
        human_size(l.size),
        human_size(rate)
    )
}

fn redraw(state: &mut State) {
    let mut err = std::io::stderr().lock();
    if state.drawn > 0 {
        let _ = write!(err, "\x1b[{}A", state.drawn);
    }
    for l in &state.layers {
        let status = if l.finished { "done" } else { "pulling" };
        let _ = writeln!(
            err,
            "\x1b[2K{} {status:<7} {}",
            short(&l.digest),
            rate_line(l)
        );
    }
    state.drawn = state.layers.len();
    let _ = err.flush();
}
