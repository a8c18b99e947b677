//! `halt`: stop the node (interfaces detached, control socket removed).

use clap::Parser;

use super::{parse, CmdError, Ctx, Done};
use crate::stack::Stack;

#[derive(Parser)]
#[command(name = "halt", about = "stop the node")]
struct Args {
    #[arg(long)]
    json: bool,
}

pub fn run(stack: &mut Stack, ctx: &Ctx<'_>) -> Result<Done, CmdError> {
    let Some(args) = parse::<Args>(ctx)? else {
        return Ok(Done::Exit(0));
    };
    if args.json {
        ctx.out.json(&serde_json::json!({ "halting": true }));
    }
    stack.halt_requested = true;
    Ok(Done::Exit(0))
}
