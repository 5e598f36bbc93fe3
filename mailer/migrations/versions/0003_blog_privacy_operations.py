"""blog, privacy and operations: API tokens, webhooks and their queue, bounce events, named leases (one scheduler),
shared rate counts, inbox proofs for data requests, background CSV imports; articles' image alt text
and hand-edited actions, feeds' action reading and full-content modes, scanner clicks.

Existing rows get defaults: feeds keep reading actions and sending summaries, no click is a scanner's.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 03:03:24.284405
"""

from alembic import op
import sqlalchemy as sa
import mailer.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bounce_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=True),
    sa.Column('send_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('source', sa.String(length=20), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('received_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['send_id'], ['sends.id'], name=op.f('fk_bounce_events_send_id_sends'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_bounce_events_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bounce_events'))
    )
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bounce_events_send_id'), ['send_id'], unique=False)
        batch_op.create_index('ix_bounce_events_subscriber', ['subscriber_id', 'received_at'], unique=False)

    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('acquired_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.create_table('rate_hits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('hit_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rate_hits'))
    )
    with op.batch_alter_table('rate_hits', schema=None) as batch_op:
        batch_op.create_index('ix_rate_hits_key', ['scope', 'key', 'hit_at'], unique=False)

    op.create_table('webhooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('secret', sa.String(length=128), nullable=False),
    sa.Column('events', sa.String(length=500), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks'))
    )
    op.create_table('import_jobs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.Column('topics', sa.String(length=500), nullable=False),
    sa.Column('is_confirmed', sa.Boolean(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('total_rows', sa.Integer(), nullable=False),
    sa.Column('done_rows', sa.Integer(), nullable=False),
    sa.Column('created_count', sa.Integer(), nullable=False),
    sa.Column('skipped_count', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Text(), nullable=False),
    sa.Column('created_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['editors.id'], name=op.f('fk_import_jobs_created_by_id_editors'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_jobs'))
    )
    op.create_table('inbox_proofs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=10), nullable=False),
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_inbox_proofs_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inbox_proofs')),
    sa.UniqueConstraint('nonce_hash', name=op.f('uq_inbox_proofs_nonce_hash'))
    )
    with op.batch_alter_table('inbox_proofs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_proofs_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('webhook_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=50), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_response', sa.String(length=1000), nullable=False),
    sa.Column('created_at', mailer.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', mailer.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['webhook_id'], ['webhooks.id'], name=op.f('fk_webhook_deliveries_webhook_id_webhooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_webhook_deliveries_dedupe_key'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_due', ['state', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_webhook_id'), ['webhook_id'], unique=False)

    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('image_alt', sa.String(length=500), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('actions_edited', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('is_scanner', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reads_actions', sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.add_column(sa.Column('full_content', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade() -> None:
    op.drop_table('bounce_events')
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.drop_column('full_content')
        batch_op.drop_column('reads_actions')

    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.drop_column('is_scanner')

    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_column('actions_edited')
        batch_op.drop_column('image_alt')

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_webhook_id'))
        batch_op.drop_index('ix_webhook_deliveries_due')

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('inbox_proofs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_proofs_subscriber_id'))

    op.drop_table('inbox_proofs')
    op.drop_table('import_jobs')
    op.drop_table('webhooks')
    with op.batch_alter_table('rate_hits', schema=None) as batch_op:
        batch_op.drop_index('ix_rate_hits_key')

    op.drop_table('rate_hits')
    op.drop_table('leases')
    op.drop_table('api_tokens')
