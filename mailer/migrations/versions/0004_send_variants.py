"""send variants: a send rendered once per topic set; its outbox rows keep ids, not bytes.

Sends keep the counts of outbox rows that retention (`delivery.keep_days`) deleted. A send's outbox
rows no longer need a dedupe key or a stored Message-ID: (send_id, subscriber_id)
is unique instead, and the worker derives the Message-ID from the ids. Rows queued before this
migration keep their bytes and are sent as they are.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('send_variants',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('send_id', sa.Integer(), nullable=False),
    sa.Column('topic_key', sa.Text(), nullable=False),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('placeholder', sa.String(length=40), nullable=False),
    sa.Column('recipients_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['send_id'], ['sends.id'], name=op.f('fk_send_variants_send_id_sends'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_send_variants'))
    )
    with op.batch_alter_table('send_variants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_send_variants_send_id'), ['send_id'], unique=False)

    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reduced_counts', sa.Text(), nullable=False, server_default=''))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('variant_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=40), nullable=True))
        batch_op.alter_column('dedupe_key',
               existing_type=sa.VARCHAR(length=120),
               nullable=True)
        batch_op.alter_column('message_id',
               existing_type=sa.VARCHAR(length=250),
               nullable=True)
        batch_op.drop_index(batch_op.f('ix_outbox_send_id'))
        batch_op.create_unique_constraint('uq_outbox_send_subscriber', ['send_id', 'subscriber_id'])
        batch_op.create_foreign_key(batch_op.f('fk_outbox_variant_id_send_variants'), 'send_variants', ['variant_id'], ['id'], ondelete='CASCADE')



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_outbox_variant_id_send_variants'), type_='foreignkey')
        batch_op.drop_constraint('uq_outbox_send_subscriber', type_='unique')
        batch_op.create_index(batch_op.f('ix_outbox_send_id'), ['send_id'], unique=False)
        batch_op.alter_column('message_id',
               existing_type=sa.VARCHAR(length=250),
               nullable=False)
        batch_op.alter_column('dedupe_key',
               existing_type=sa.VARCHAR(length=120),
               nullable=False)
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('variant_id')

    with op.batch_alter_table('sends', schema=None) as batch_op:
        batch_op.drop_column('reduced_counts')

    with op.batch_alter_table('send_variants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_send_variants_send_id'))

    op.drop_table('send_variants')
