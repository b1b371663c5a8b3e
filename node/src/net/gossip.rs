//! Group topics in the event loop: subscriptions, publication, and validation of every
//! message before gossipsub forwards it.

use kith_protocol::group::GroupEnvelope;
use kith_protocol::status::Status;
use kith_protocol::MessageId;
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance};

use super::event_loop::EventLoop;
use crate::events::Event;

impl EventLoop {
    pub(super) fn group_subscribe(&mut self, topic: String, on: bool) {
        let t = IdentTopic::new(topic);
        if on {
            if let Err(e) = self.swarm.behaviour_mut().gossip.subscribe(&t) {
                tracing::warn!("cannot subscribe to a group topic: {e}");
            }
        } else {
            self.swarm.behaviour_mut().gossip.unsubscribe(&t);
        }
    }

    /// Publishes a stored group message. A failure (no peers on the topic yet) is not an
    /// error: members that do not confirm the message get a one-to-one copy.
    pub(super) fn group_publish(&mut self, id: MessageId, topic: String, data: Vec<u8>) {
        match self
            .swarm
            .behaviour_mut()
            .gossip
            .publish(IdentTopic::new(topic), data)
        {
            Ok(_) => match self.core.store.advance_status(&id, Status::Sent, None) {
                Ok(Some(m)) => {
                    let _ = self.core.events.send(Event::receipt(&m));
                }
                Ok(None) => {}
                Err(e) => tracing::error!("could not update a message status: {e}"),
            },
            Err(e) => {
                tracing::debug!(%id, "group publish not done now ({e}); one-to-one copies will follow")
            }
        }
    }

    pub(super) fn on_gossip_event(&mut self, ev: gossipsub::Event) {
        let gossipsub::Event::Message {
            propagation_source,
            message_id,
            message,
        } = ev
        else {
            return;
        };
        let verdict = self.validate_group_message(&message);
        let acceptance = match &verdict {
            Ok(_) => MessageAcceptance::Accept,
            Err((reason, reject)) => {
                if *reject {
                    tracing::warn!(from = %propagation_source, "dropped group message: {reason}");
                    let _ = self.core.events.send(Event::Dropped {
                        from: propagation_source.to_string(),
                        reason: reason.clone(),
                    });
                    MessageAcceptance::Reject
                } else {
                    MessageAcceptance::Ignore
                }
            }
        };
        self.swarm
            .behaviour_mut()
            .gossip
            .report_message_validation_result(&message_id, &propagation_source, acceptance);
        if let Ok(env) = verdict {
            let core = self.core.clone();
            tokio::spawn(async move {
                if let Err(e) = core.on_group_envelope(env).await {
                    tracing::error!("could not store a group message: {e}");
                }
            });
        }
    }

    /// Checks a message before it is forwarded: size, signature, a group we are in, a topic
    /// that is the group's, a sender that is a member. `Err((reason, reject))`.
    fn validate_group_message(
        &self,
        m: &gossipsub::Message,
    ) -> Result<GroupEnvelope, (String, bool)> {
        let env = GroupEnvelope::verify(&m.data)
            .map_err(|e| (format!("invalid group envelope: {e}"), true))?;
        if m.topic.as_str() != env.group.topic() {
            return Err(("group message on another group's topic".into(), true));
        }
        let rec = match self.core.store.group(&env.group) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(("unknown group".into(), false)),
            Err(e) => return Err((format!("store: {e}"), false)),
        };
        if rec.left {
            return Err(("a group we left".into(), false));
        }
        if !rec.state.is_member(&env.sender) {
            return Err(("group message signed by a non-member".into(), true));
        }
        Ok(env)
    }
}
