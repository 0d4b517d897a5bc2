//! The optional enrollment webhook: a Mattermost/Slack-compatible JSON
//! message `{"text": …}` posted with a short timeout.

use std::time::Duration;

pub fn post(url: &str, text: &str, timeout: Duration) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    agent.post(url).send_json(serde_json::json!({ "text": text })).map(|_| ()).map_err(|e| e.to_string())
}
