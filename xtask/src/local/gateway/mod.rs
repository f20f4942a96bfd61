//! A local API Gateway in front of local Lambda instances: HTTP on 127.0.0.1, one port per
//! service, each request made a REST proxy event ([`event`]) and handed to an instance of the
//! deployed `bootstrap` through `lambda-harness`'s Runtime API. It fails as API Gateway and Lambda
//! do: a function that fails init or exits mid-request is a `502 {"message": "Internal server
//! error"}` and the next request starts a fresh instance; one that runs past its timeout is a 504;
//! a response over 6 MB is a 502. Requests at once get instances of their own, up to a limit;
//! beyond it they wait. A new `Launch` (after a redeploy) retires the instances of the old one.

mod front;
pub mod logs;
pub mod metrics;
pub mod terminal;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lambda_harness::{Bootstrap, Error, Running};

pub use self::front::serve;
use self::front::{bad_gateway, gateway_timeout};
use self::logs::Logs;
use self::metrics::Metrics;
use self::terminal::{Echo, Kind};
use gate::event::{self, Answer};

/// The most a Lambda function's response may hold.
pub const RESPONSE_LIMIT: usize = 6 * 1024 * 1024;

/// How to start an instance of one version of a function.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Lambda's name for the function: its log group is `/aws/lambda/<function>`.
    pub function: String,
    pub bootstrap: Bootstrap,
    pub timeout: Duration,
    pub memory_mb: u32,
    /// What the terminal shows for this version (the artifact key's short hash).
    pub version: String,
}

/// A function's instances, started on demand up to `limit`, and the version they run.
#[derive(Debug)]
pub struct Instances {
    name: String,
    limit: usize,
    logs: Logs,
    echo: Echo,
    state: Mutex<Pool>,
    freed: Condvar,
    requests: AtomicU64,
    /// The last lines the function's instances wrote to their logs, for a failure to show.
    recent: Mutex<std::collections::VecDeque<String>>,
    /// During a canary: the other version's instances, and the share of requests (in
    /// thousandths) they get, as the `live` alias's routing configuration says.
    canary: Mutex<Option<(Arc<Instances>, u32)>>,
    /// Where each request is counted: the metrics' sender, the API it came through
    /// (`<service>-<environment>`) and the function's name.
    metrics: Option<(Metrics, String, String)>,
}

/// How many of the function's last log lines [`Instances::last_lines`] keeps.
const RECENT_LINES: usize = 30;

#[derive(Debug)]
struct Pool {
    launch: Arc<Launch>,
    generation: u64,
    idle: Vec<Instance>,
    /// Instances that exist (idle or busy) or are starting.
    count: usize,
    /// The command is stopping: no instance starts any more.
    stopped: bool,
}

impl Pool {
    /// Stops every idle instance.
    fn retire_idle(&mut self) {
        self.count -= self.idle.len();
        for mut instance in self.idle.drain(..) {
            instance.running.stop();
        }
    }
}

/// One running instance: the version it runs, its log stream, and its init time until its first
/// `REPORT` has said it.
#[derive(Debug)]
struct Instance {
    generation: u64,
    running: Running,
    stream: String,
    init: Option<Duration>,
}

impl Instances {
    pub fn new(name: &str, launch: Launch, limit: usize, logs: Logs, echo: Echo) -> Instances {
        Instances {
            name: name.to_owned(),
            limit: limit.max(1),
            logs,
            echo,
            state: Mutex::new(Pool {
                launch: Arc::new(launch),
                generation: 0,
                idle: Vec::new(),
                count: 0,
                stopped: false,
            }),
            freed: Condvar::new(),
            requests: AtomicU64::new(0),
            recent: Mutex::new(std::collections::VecDeque::new()),
            canary: Mutex::new(None),
            metrics: None,
        }
    }

    /// Counts each request in the emulator's CloudWatch, as API Gateway `api` and Lambda do.
    pub fn metered(mut self, metrics: Metrics, api: &str) -> Instances {
        let function = self
            .state
            .get_mut()
            .expect("the pool's lock")
            .launch
            .function
            .clone();
        self.metrics = Some((metrics, api.to_owned(), function));
        self
    }

    /// From now on a share of requests (`permille` thousandths) goes to `canary`'s instances, as
    /// Lambda routes an alias with an additional version; `None` ends it. The canary before, if
    /// any, stops.
    pub fn set_canary(&self, canary: Option<(Arc<Instances>, u32)>) {
        let before =
            std::mem::replace(&mut *self.canary.lock().expect("the canary's lock"), canary);
        if let Some((before, _)) = before {
            before.stop();
        }
    }

    /// The canary's instances, when this request is one of its share.
    fn canary_for_this_request(&self) -> Option<Arc<Instances>> {
        use std::hash::BuildHasher as _;
        let canary = self.canary.lock().expect("the canary's lock");
        let (instances, permille) = canary.as_ref()?;
        let roll = std::collections::hash_map::RandomState::new()
            .hash_one(self.requests.load(Ordering::Relaxed))
            % 1000;
        (roll < u64::from(*permille)).then(|| Arc::clone(instances))
    }

    /// The last lines the function wrote to its logs (its init output and `INIT_REPORT` when an
    /// instance failed to start), oldest first.
    pub fn last_lines(&self) -> Vec<String> {
        self.recent
            .lock()
            .expect("the recent lines' lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Sends `lines` to `function`'s log stream `stream`, keeping the last of them.
    fn log(&self, function: &str, stream: &str, lines: Vec<String>) {
        {
            let mut recent = self.recent.lock().expect("the recent lines' lock");
            recent.extend(lines.iter().filter(|line| !line.is_empty()).cloned());
            let over = recent.len().saturating_sub(RECENT_LINES);
            recent.drain(..over);
        }
        self.logs.write(function, stream, lines);
    }

    /// From now on requests run `launch`; idle instances of the old version stop.
    pub fn replace(&self, launch: Launch) {
        let mut pool = self.state.lock().expect("the pool's lock");
        pool.generation += 1;
        pool.launch = Arc::new(launch);
        pool.retire_idle();
        self.freed.notify_all();
    }

    /// Stops every idle instance, keeps new ones from starting, and sends the lines not yet in
    /// the emulator's logs (a few seconds at most).
    pub fn stop(&self) {
        if let Some((canary, _)) = self.canary.lock().expect("the canary's lock").take() {
            canary.stop();
        }
        {
            let mut pool = self.state.lock().expect("the pool's lock");
            pool.retire_idle();
            pool.stopped = true;
        }
        self.logs.flush(Duration::from_secs(5));
    }

    pub fn version(&self) -> String {
        self.state
            .lock()
            .expect("the pool's lock")
            .launch
            .version
            .clone()
    }

    /// Runs one event on an idle instance, or a new one; what API Gateway would answer. During a
    /// canary, its share of events goes to the other version's instances.
    pub fn invoke(&self, event: &[u8]) -> Answer {
        if let Some(canary) = self.canary_for_this_request() {
            self.requests.fetch_add(1, Ordering::Relaxed);
            return canary.invoke(event);
        }
        let started = Instant::now();
        let (answer, failed) = self.run(event);
        if let Some((metrics, api, function)) = &self.metrics {
            metrics.record(metrics::Request {
                function: function.clone(),
                api: api.clone(),
                stage: "v1".to_owned(),
                status: answer.status,
                failed,
                duration: started.elapsed(),
            });
        }
        answer
    }

    /// Runs one event here: what API Gateway would answer, and whether the function failed.
    fn run(&self, event: &[u8]) -> (Answer, bool) {
        let (launch, mut instance) = match self.take() {
            Ok(taken) => taken,
            Err(error) => {
                self.say(Kind::Problem, &format!("init failed: {error}"));
                return (bad_gateway(), true);
            }
        };
        let number = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let started = Instant::now();
        let result = instance.running.invoke(event, launch.timeout);
        let took = started.elapsed();
        let request_id = match &result {
            Ok(invocation) => invocation.request_id.clone(),
            Err(Error::Function { request_id, .. } | Error::TimedOut { request_id, .. }) => {
                request_id.clone()
            }
            Err(_) => format!("request-{number}"),
        };
        let mut lines = vec![format!("START RequestId: {request_id} Version: $LATEST")];
        for line in instance.running.take_output() {
            self.say(Kind::Output, &line);
            lines.push(line);
        }
        // Lambda bills whole milliseconds, rounded up.
        let billed = took.as_micros().div_ceil(1000).max(1);
        let memory = instance.running.peak_rss().unwrap_or(0) / (1024 * 1024);
        let mut report = format!(
            "REPORT RequestId: {request_id}\tDuration: {:.2} ms\tBilled Duration: {billed} ms\t\
             Memory Size: {} MB\tMax Memory Used: {memory} MB",
            took.as_secs_f64() * 1000.0,
            launch.memory_mb
        );
        if let Some(init) = instance.init.take() {
            report.push_str(&format!(
                "\tInit Duration: {:.2} ms",
                init.as_secs_f64() * 1000.0
            ));
        }
        lines.push(format!("END RequestId: {request_id}"));
        lines.push(report.clone());
        self.log(&launch.function, &instance.stream, lines);
        let answer = match result {
            Ok(invocation) if invocation.response.len() > RESPONSE_LIMIT => {
                self.say(
                    Kind::Problem,
                    &format!(
                        "the response ({} bytes) is over Lambda's 6 MB",
                        invocation.response.len()
                    ),
                );
                (bad_gateway(), true)
            }
            Ok(invocation) => (
                event::answer(&invocation.response).unwrap_or_else(|problem| {
                    self.say(Kind::Problem, &problem);
                    bad_gateway()
                }),
                false,
            ),
            Err(Error::Function { body, .. }) => {
                self.say(Kind::Problem, &format!("the function failed: {body}"));
                (bad_gateway(), true)
            }
            Err(Error::TimedOut { .. }) => {
                self.say(
                    Kind::Problem,
                    &format!("timed out after {:?}", launch.timeout),
                );
                self.discard(instance);
                return (gateway_timeout(), true);
            }
            Err(error) => {
                self.say(Kind::Problem, &format!("the instance died: {error}"));
                self.discard(instance);
                return (bad_gateway(), true);
            }
        };
        self.say(Kind::Lambda, &format!("{report} ({})", launch.version));
        self.give_back(instance);
        answer
    }

    /// A line on this machine's terminal, after the service's name.
    pub fn say(&self, kind: Kind, text: &str) {
        self.echo.line(&self.name, kind, text);
    }

    /// An idle instance of the current version, a new one if there is room, else waits.
    fn take(&self) -> Result<(Arc<Launch>, Instance), Error> {
        let mut pool = self.state.lock().expect("the pool's lock");
        loop {
            if pool.stopped {
                return Err(Error::Io {
                    doing: "starting an instance".into(),
                    error: std::io::Error::other("the gateway is stopping"),
                });
            }
            let generation = pool.generation;
            // An idle instance that died (killed, out of memory) is dropped, not used: the next
            // one, or a new one, takes the request, as Lambda replaces a dead execution environment.
            let before = pool.idle.len();
            pool.idle.retain_mut(|i| i.running.is_alive());
            let dead = before - pool.idle.len();
            if dead > 0 {
                pool.count -= dead;
                self.say(
                    Kind::Lambda,
                    &format!("{dead} idle instance(s) had exited: replaced"),
                );
            }
            if let Some(index) = pool.idle.iter().position(|i| i.generation == generation) {
                let instance = pool.idle.swap_remove(index);
                return Ok((Arc::clone(&pool.launch), instance));
            }
            if pool.count < self.limit {
                pool.count += 1;
                let launch = Arc::clone(&pool.launch);
                drop(pool);
                let started = launch
                    .bootstrap
                    .start(Duration::from_secs(30).max(launch.timeout));
                return match started {
                    Ok(running) => {
                        let stream = logs::stream_name();
                        let init = running.take_output();
                        for line in &init {
                            self.say(Kind::Output, line);
                        }
                        self.log(&launch.function, &stream, init);
                        self.say(
                            Kind::Lambda,
                            &format!(
                                "START instance ({}): init {:.1} ms",
                                launch.version,
                                running.cold_init.as_secs_f64() * 1000.0
                            ),
                        );
                        let init = Some(running.cold_init);
                        Ok((
                            launch,
                            Instance {
                                generation,
                                running,
                                stream,
                                init,
                            },
                        ))
                    }
                    Err(error) => {
                        self.state.lock().expect("the pool's lock").count -= 1;
                        self.freed.notify_one();
                        // As Lambda does, a failed init's output reaches the function's logs,
                        // with the report that says it failed.
                        let mut lines: Vec<String> = error
                            .output()
                            .unwrap_or_default()
                            .lines()
                            .map(str::to_owned)
                            .collect();
                        lines.push(format!(
                            "INIT_REPORT Phase: init\tStatus: error\tError Type: {}",
                            error.init_error_type()
                        ));
                        self.log(&launch.function, &logs::stream_name(), lines);
                        Err(error)
                    }
                };
            }
            pool = self.freed.wait(pool).expect("the pool's lock");
        }
    }

    fn give_back(&self, mut instance: Instance) {
        let mut pool = self.state.lock().expect("the pool's lock");
        if instance.generation == pool.generation {
            pool.idle.push(instance);
        } else {
            instance.running.stop();
            pool.count -= 1;
        }
        self.freed.notify_one();
    }

    fn discard(&self, mut instance: Instance) {
        instance.running.stop();
        self.state.lock().expect("the pool's lock").count -= 1;
        self.freed.notify_one();
    }
}

/// Starts a thread that hands each message sent on the returned channel, in order, to `send`,
/// which runs on a runtime of its own; so a request never waits on the emulator. The first
/// failure `send` reports is said on stderr, the later ones not.
fn sending_thread<M: Send + 'static>(
    mut send: impl FnMut(&tokio::runtime::Runtime, M) -> Result<(), String> + Send + 'static,
) -> std::sync::mpsc::Sender<M> {
    let (sender, messages) = std::sync::mpsc::channel::<M>();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let mut warned = false;
        for message in messages {
            if let Err(said) = send(&runtime, message)
                && !warned
            {
                eprintln!("{said}");
                warned = true;
            }
        }
    });
    sender
}

/// The program that runs a `bootstrap` of `architecture` on this machine: the bootstrap itself
/// where the machine is the same, else `qemu-aarch64-static` with the arm64 loader's path
/// (installed from Debian's packages first when `install` and it is missing).
pub fn runner(
    bootstrap: &std::path::Path,
    architecture: crate::names::Architecture,
    install: bool,
) -> anyhow::Result<Bootstrap> {
    use crate::names::Architecture;
    let native = match std::env::consts::ARCH {
        "aarch64" => Architecture::Arm64,
        _ => Architecture::X86_64,
    };
    if architecture == native {
        return Ok(Bootstrap::new(bootstrap));
    }
    let found = || {
        qemu(architecture, crate::local::process::on_path, |dir| {
            dir.is_dir()
        })
    };
    if found().is_err() && install {
        eprintln!("installing {QEMU_PACKAGES} from Debian's packages");
        crate::local::apt_install(&QEMU_PACKAGES.split(' ').collect::<Vec<_>>())?;
    }
    let (program, loader) = found()?;
    Ok(Bootstrap::new(program)
        .arg("-L")
        .arg(loader)
        .arg(bootstrap)
        .task_root(bootstrap.parent().unwrap_or(std::path::Path::new("."))))
}

/// Debian's packages that bring qemu's user-mode emulators and the arm64 loader.
const QEMU_PACKAGES: &str = "qemu-user-static libc6-arm64-cross";

/// qemu's user-mode emulator for `architecture` (found by `on_path`) and the loader directory it
/// needs (which `is_dir`), or what to install.
fn qemu(
    architecture: crate::names::Architecture,
    on_path: impl Fn(&str) -> Option<PathBuf>,
    is_dir: impl Fn(&std::path::Path) -> bool,
) -> anyhow::Result<(PathBuf, &'static str)> {
    use crate::names::Architecture;
    let (qemu, loader) = match architecture {
        Architecture::Arm64 => ("qemu-aarch64-static", "/usr/aarch64-linux-gnu"),
        Architecture::X86_64 => ("qemu-x86_64-static", "/usr/x86_64-linux-gnu"),
    };
    match on_path(qemu).filter(|_| is_dir(std::path::Path::new(loader))) {
        Some(program) => Ok((program, loader)),
        None => anyhow::bail!(
            "running an {architecture} function here needs {qemu} and the loader in {loader}: \
             install them with `sudo apt-get install -y {QEMU_PACKAGES}`, or pass --install-tools"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Architecture;

    #[test]
    fn without_qemu_it_says_what_to_install() {
        let error = qemu(Architecture::Arm64, |_| None, |_| true)
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "running an arm64 function here needs qemu-aarch64-static and the loader in \
             /usr/aarch64-linux-gnu: install them with `sudo apt-get install -y qemu-user-static \
             libc6-arm64-cross`, or pass --install-tools"
        );
        let found = |name: &str| Some(PathBuf::from("/usr/bin").join(name));
        assert!(
            qemu(Architecture::Arm64, found, |_| false).is_err(),
            "no loader"
        );
        let (program, loader) = qemu(Architecture::Arm64, found, |_| true).unwrap();
        assert_eq!(program, PathBuf::from("/usr/bin/qemu-aarch64-static"));
        assert_eq!(loader, "/usr/aarch64-linux-gnu");
    }
}
