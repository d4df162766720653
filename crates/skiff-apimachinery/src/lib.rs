//! What the API server and every client share, as upstream's `k8s.io/apimachinery` holds
//! it: resource quantities ([`quantity`]), API times ([`time`]), label and field selectors
//! ([`labels`]), CronJob schedules ([`cron`]), and the well-known names both sides must
//! agree on ([`names`]). Small on
//! purpose: controllers, the scheduler and the node agent depend on this, not on the whole
//! API crate.

pub mod cron;
pub mod labels;
pub mod names;
pub mod quantity;
pub mod time;
