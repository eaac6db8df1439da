//! Arbitrary bytes prost-decoded as a CreateBudgetRequest and validated as BudgetService
//! validates it; a valid budget must survive its own round trip through the proto (but
//! for its Slack webhooks, which the proto redacts).
#![no_main]
use bursar::proto::CreateBudgetRequest;
use bursar::server::budgets::{budget_from_proto, budget_from_request, budget_to_proto};
use bursar::store::budgets::BudgetOrigin;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = CreateBudgetRequest::decode(data) else {
        return;
    };
    let Ok(b) = budget_from_request(r.budget.as_ref()) else {
        return;
    };
    let back = budget_to_proto(&b, BudgetOrigin::Api);
    let mut again = budget_from_proto(&back).expect("a valid budget's own proto decodes");
    again.channels.slack_webhooks = b.channels.slack_webhooks.clone();
    assert_eq!(again, b, "round trip");
});
